"""`dgen train`: fit a patch file's parameters to a target sound.

The patch's `build(g)` creates `dgen.Parameter`s and returns the signal node to fit. The
target enters the graph as the input channel after the patch's own; the loss is a
multi-resolution spectral loss plus a small sample MSE, and its mean over the target's
frames is minimised with Adam.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import RunInputError, TrainingError
from .patch import PatchError, build_patch, read_input
from .train.context import history_json


def _signal(returned, path):
    if len(returned) != 1:
        raise PatchError(
            f"{path}: for training, build(g) must return the one signal node to fit "
            f"(it returned {len(returned)} node(s))"
        )
    return returned[0]


def fit_graph(path, rate, windows, mse_weight):
    """(graph, parameters, signal node, its output channel, loss node) for a patch file."""
    from .ops import Op

    g, returned = build_patch(path, rate, outputs=False)
    sig = _signal(returned, path)
    if not g.parameters:
        raise PatchError(f"{path}: build(g) made no dgen.Parameter to fit")
    target = g.input(g.input_channels())
    loss = g.multi_spectral_loss(sig, target, windows=windows)
    if mse_weight:
        loss = loss + mse_weight * g.n(Op.mse, sig, target)
    outs = g.outputs()
    channel = max(outs) + 1 if outs else 0
    g.output(channel, sig)
    return g, list(g.parameters), sig, channel, loss


def train_patch(
    path,
    target_path,
    steps=200,
    lr=0.05,
    out="dgen_fit",
    backend="c",
    input_path=None,
    windows=(64, 256, 1024),
    mse_weight=0.1,
    progress=None,
) -> dict:
    """Fit, then write params.json, result.wav and loss.png into `out`; returns the summary."""
    import dgen

    if not Path(target_path).is_file():
        raise RunInputError(f"{target_path}: no such target file")
    target, rate = dgen.load_audio(target_path)
    target = target[:1]  # the first channel
    g, params, sig, channel, loss = fit_graph(path, rate, windows, mse_weight)
    frames = target.shape[1]
    n_in = g.input_channels() - 1
    if n_in and not input_path:
        raise RunInputError(f"{path} reads {n_in} input channel(s): give --input FILE")
    dry = read_input(input_path, rate, n_in)[:, :frames] if n_in else np.zeros((0, frames), np.float32)
    dry = np.pad(dry, ((0, 0), (0, frames - dry.shape[1])))
    inputs = np.concatenate([dry, target]).astype(np.float32)
    initial = {p.name: float(np.ravel(p.value)[0]) for p in params}
    prog = dgen.compile(g, backend=backend, frame_count=frames, backwards=True)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=lr), loss, prog)
    try:
        ctx.train(steps, inputs=inputs, progress=progress)
    except TrainingError as e:
        raise TrainingError(f"{e} (try a smaller --lr, or min/max bounds on the parameter)") from e
    ctx.zero_grad()
    final = float(ctx.forward_backward(inputs))
    prog.reset()
    result = np.asarray(prog.run(inputs))[channel]
    return _write(Path(out), path, target_path, ctx, initial, final, result, rate, steps, lr)


def _write(out, path, target_path, ctx, initial, final, result, rate, steps, lr) -> dict:
    import dgen

    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "patch": str(path),
        "target": str(target_path),
        "steps": steps,
        "lr": lr,
        "final_loss": final,
        "parameters": {p.name: float(np.ravel(p.value)[0]) for p in ctx.parameters},
        "initial": initial,
        "history": history_json(ctx.history),
    }
    files = [out / "params.json", out / "result.wav", out / "loss.png"]
    files[0].write_text(json.dumps(summary, indent=1))
    dgen.save_audio(files[1], result, rate)
    if ctx.history:
        dgen.plot_history(ctx.history, files[2], title=f"dgen train {Path(path).name}")
    summary["files"] = [str(f) for f in files]
    return summary
