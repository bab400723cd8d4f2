"""The `dgen` command: render, emit, graph, export and train patch files.

A patch file is Python defining `build(g)` (see dgen/patch.py for the convention):

    dgen render tone.py -o tone.wav --seconds 2
    dgen render fx.py --input dry.wav -o wet.wav
    dgen emit tone.py --backend c -o tone.c
    dgen graph tone.py -o tone.svg
    dgen export tone.py -o build/tone && make -C build/tone && build/tone/host out.wav 2
    dgen train synth.py --target target.wav --steps 200 --out fit/
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from .errors import DgenError, RunInputError
from .patch import build_patch, c_identifier, read_input

SUBTYPES = {"float": "FLOAT", "pcm16": "PCM_16", "pcm24": "PCM_24"}


def default_backend() -> str:
    """ "c" where a C compiler exists, else "reference"."""
    from .errors import BackendUnavailable
    from .runtime.cc import find_compiler

    try:
        find_compiler()
        return "c"
    except BackendUnavailable:
        return "reference"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


# ---------------------------------------------------------------------- render
def render_graph(g, frames: int, inputs=None, backend: str = "c", chunk: int = 65536, progress=None):
    """(outputs, frames) of `g`, rendered `chunk` frames at a time with a progress bar."""
    import dgen

    from .progress import progress_bar

    prog = dgen.compile(g, backend=backend, frame_count=min(chunk, frames))
    out = np.zeros((prog.n_outputs, frames), np.float32)
    with progress_bar(total=frames, desc="rendering", enable=progress) as bar:
        for at in range(0, frames, chunk):
            n = min(chunk, frames - at)
            x = None if inputs is None else inputs[:, at : at + n]
            out[:, at : at + n] = prog.run(x, frames=n)
            bar.update(n)
    return out


def _input_rate(args):
    if args.sample_rate is not None or not getattr(args, "input", None):
        return args.sample_rate or 44100
    from .audio import _soundfile

    if not Path(args.input).is_file():
        raise RunInputError(f"{args.input}: no such input file")
    return _soundfile().info(str(args.input)).samplerate


def cmd_render(args) -> int:
    from .audio import save_audio

    rate = _input_rate(args)
    g, _ = build_patch(args.patch, rate)
    inputs, frames = None, None if args.seconds is None else max(1, round(args.seconds * rate))
    if g.input_channels():
        if not args.input:
            raise RunInputError(f"{args.patch} reads {g.input_channels()} input channel(s): give --input FILE")
        inputs = read_input(args.input, rate, g.input_channels())
        frames = frames or inputs.shape[1]
        pad = max(0, frames - inputs.shape[1])  # render past the input's end: silence in
        inputs = np.pad(inputs, ((0, 0), (0, pad)))[:, :frames]
    elif args.input:
        _say(f"note: {args.patch} reads no input channel; {args.input} is ignored")
    frames = frames or round(2.0 * rate)
    backend = args.backend or default_backend()
    out = render_graph(g, frames, inputs, backend, progress=args.progress)
    save_audio(args.output, out, rate, subtype=SUBTYPES[args.format])
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    _say(f"wrote {args.output}: {out.shape[0]} channel(s), {frames} frames at {rate:g} Hz ({backend}), peak {peak:.3g}")
    return 0


# ---------------------------------------------------------------------- emit / graph / export
def cmd_emit(args) -> int:
    import dgen

    g, _ = build_patch(args.patch, args.sample_rate or 44100)
    source = dgen.generate(g, backend=args.backend, instances=args.instances)
    if args.output in (None, "-"):
        sys.stdout.write(source)
    else:
        Path(args.output).write_text(source)
        _say(f"wrote {args.output} ({args.backend} source, {source.count(chr(10))} lines)")
    return 0


def cmd_graph(args) -> int:
    from .draw import to_dot
    from .pipeline import plan

    g, _ = build_patch(args.patch, args.sample_rate or 44100)
    text = to_dot(g, plan(g, expand=args.expanded), title=Path(args.patch).name)
    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower() or "svg"
    if fmt in ("dot", "gv"):
        out.write_text(text)
        _say(f"wrote {out}")
        return 0
    dot = shutil.which("dot")
    if dot is None:
        dot_path = out.with_suffix(".dot")
        dot_path.write_text(text)
        _say(
            f"Graphviz is not installed (no 'dot' program on PATH), so {out} was not drawn.\n"
            f"Wrote the graph as DOT text to {dot_path} instead. Install Graphviz (apt-get install graphviz, "
            f"brew install graphviz) and run:  dot -T{fmt} {dot_path} -o {out}"
        )
        return 0
    proc = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=text.encode(), capture_output=True)
    if proc.returncode != 0:
        raise DgenError(f"dot failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    _say(f"wrote {out} ({len(g)} nodes)")
    return 0


def cmd_export(args) -> int:
    from .export import export_c

    g, _ = build_patch(args.patch, args.sample_rate or 44100)
    name = c_identifier(args.name or Path(args.patch).stem)
    paths = export_c(g, name, f" from {Path(args.patch).name}").write(args.output)
    _say("wrote " + ", ".join(str(p) for p in paths))
    _say(f"build and render: make -C {args.output} && {Path(args.output) / 'host'} out.wav 2")
    return 0


# ---------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from .fitpatch import train_patch

    windows = tuple(int(w) for w in args.windows.split(","))
    result = train_patch(
        args.patch,
        args.target,
        steps=args.steps,
        lr=args.lr,
        out=args.out,
        backend=args.backend or default_backend(),
        input_path=args.input,
        windows=windows,
        mse_weight=args.mse_weight,
        progress=args.progress,
    )
    for name, value in result["parameters"].items():
        print(f"{name} = {value:.6g}")
    _say(f"final loss {result['final_loss']:.6g}; wrote " + ", ".join(result["files"]))
    return 0


# ---------------------------------------------------------------------- parser
RENDER_DOC = """Render a patch to a WAV file. The patch's build(g) adds outputs (or returns nodes);
output channel i becomes WAV channel i. With --input, g.input(i) reads channel i of the file."""

TRAIN_DOC = """Fit the parameters of a patch to a target sound with Adam.

The patch's build(g) creates dgen.Parameter(g, value, name=..., min=..., max=...) objects and
returns the signal node to fit. The loss is g.multi_spectral_loss(signal, target) plus
MSE_WEIGHT * mse(signal, target), averaged over the target's frames; the target enters as the
input channel after the patch's own inputs. Writes DIR/params.json (fitted values), DIR/result.wav
(the fitted patch rendered) and DIR/loss.png (loss and parameters per step)."""


def _common(p, sample_rate=True):
    p.add_argument("patch", help="a Python file defining build(g)")
    if sample_rate:
        p.add_argument(
            "--sample-rate",
            type=float,
            default=None,
            help="graph sample rate in Hz (default: the input file's, else 44100)",
        )


def _progress(p):
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress bar (it is shown only on a terminal anyway)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="dgen",
        description="dgen: an audio DSP compiler with autodiff. "
        "A patch is a Python file defining build(g); see README 'Command line'.",
    )
    from . import __version__

    ap.add_argument("--version", action="version", version=f"dgen {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("render", help="render a patch to a WAV file", description=RENDER_DOC)
    _common(p)
    p.add_argument("-o", "--output", required=True, help="the WAV file to write (one channel per output)")
    p.add_argument("--seconds", type=float, default=None, help="length (default: the input's, else 2 s)")
    p.add_argument("--input", help="audio file whose channels the patch reads with g.input(i)")
    p.add_argument(
        "--backend",
        choices=["c", "reference", "cuda"],
        default=None,
        help="default: c when a C compiler exists, else reference",
    )
    p.add_argument("--format", choices=sorted(SUBTYPES), default="float", help="sample format (default float)")
    _progress(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "emit",
        help="print or write the generated source",
        description="Write the source code dgen generates for a patch.",
    )
    _common(p)
    p.add_argument("--backend", choices=["c", "cuda"], default="c")
    p.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    p.add_argument("--instances", type=int, default=1, help="instances in SIMD lanes (default 1)")
    p.set_defaults(func=cmd_emit)

    p = sub.add_parser(
        "graph",
        help="draw the graph with Graphviz",
        description="Draw a patch's graph: nodes coloured by block kind (vector, sequential, "
        "buffer), feedback clusters boxed. Needs Graphviz's `dot` for .svg/.png/.pdf; without "
        "it the .dot file is written next to the requested path.",
    )
    _common(p)
    p.add_argument("-o", "--output", required=True, help="graph.svg, graph.png, graph.pdf or graph.dot")
    p.add_argument(
        "--expanded",
        action="store_true",
        help="draw the graph as compiled backends see it (phasor/accum/latch expanded)",
    )
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser(
        "export",
        help="export a standalone C library, a WAV host and a Makefile",
        description="Write DIR/<name>.h, DIR/<name>.c (create/reset/set_param/process/"
        "destroy; no Python or dgen at run time), DIR/host.c (renders to a WAV) and DIR/Makefile.",
    )
    _common(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--name", default=None, help="library name, a C identifier (default: the patch's name)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "train",
        help="fit a patch's parameters to a target sound",
        description=TRAIN_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p, sample_rate=False)
    p.add_argument("--target", required=True, help="the audio file to fit (its first channel)")
    p.add_argument("--input", default=None, help="audio fed to the patch's g.input(i) (e.g. a dry signal)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.05, help="Adam step size, in the parameters' units")
    p.add_argument("--windows", default="64,256,1024", help="spectral loss windows (default 64,256,1024)")
    p.add_argument("--mse-weight", type=float, default=0.1, help="weight of the sample MSE term")
    p.add_argument(
        "--out",
        default="dgen_fit",
        metavar="DIR",
        help="folder for params.json, result.wav, loss.png (default dgen_fit)",
    )
    p.add_argument("--backend", choices=["c", "reference"], default=None)
    _progress(p)
    p.set_defaults(func=cmd_train)
    return ap


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DgenError as e:
        _say(f"dgen {args.command}: error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
