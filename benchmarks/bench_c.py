"""dgen's C backend against Faust on the five patches of issue 5, in one run, on one core.

    python benchmarks/bench_c.py                    # table, ~2 minutes
    python benchmarks/bench_c.py --repeats 5 --json bench_c.json

Patches (the same math as benchmarks/peers/faust/*.dsp; see benchmarks/README_peers.md):
phasor_sin, sine_bank (16 sines), sos (one section), karplus (delay line with feedback through
a two-point average, re-plucked every second), fm_biquad (FM pair into an RBJ lowpass).

What is timed:
- dgen: `prog.run(frames=F)` of a program compiled with `dgen.compile(g, backend="c",
  instances=B)`: B = 1 with F = 65536, B = 64 with F = 16384 (about 1 ms or more per call, so
  the ~15 us of Python per call is a few % at most; at B = 64 the 4 MB result stays in cache,
  a 16 MB one measured slower). Wall time of the whole call (perf_counter), which includes
  writing every sample into the (B, 1, F) result array, preallocated once and passed as
  `run(frames=F, out=array)` (a fresh zeroed array per call cost ~10% at B = 64). State
  carries over between calls, as in a stream.
- Faust: `benchmarks/peers/faust_bench.py` (`faust -lang c`, scalar and `-vec`, compiled with
  dgen's flags `-O3 -march=native -fno-math-errno`), its C harness calling `compute` on blocks of
  256 frames, timed inside C. Faust at 64 instances is 64 separate DSP instances computed one
  after the other, block by block (Faust has no batch form); "faust best" is the faster of scalar
  and -vec in each cell.
- samples/s = frames x instances / seconds, averaged over `--seconds` of calls per cell for
  both engines. Every cell is measured `--repeats` times, rounds interleaved (every patch and
  every engine in each round), and the best round is kept. The process
  pins itself to one core (`--cpu`, default 1); the Faust harnesses inherit the pin.

Before timing, each dgen program's output is checked against Faust's render of the same patch
(one instance, 4096 frames, karplus 45100 to cover its re-pluck; atol 5e-4: the two float32
phasors round differently, see README_peers.md) and, for B = 64, every instance against the one-instance program.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT / "peers"))
import faust_bench as fb  # noqa: E402

import dgen  # noqa: E402
from dgen import Op  # noqa: E402

TWO_PI = 2 * math.pi
FRAMES = {1: 65536, 64: 16384}  # frames per run() call, by instances
CHECK_FRAMES = {"karplus": 45100}  # past the re-pluck at 44100; the others: 4096
ATOL = 5e-4


# ---------------------------------------------------------------------- the patches
def phasor(g, freq):
    return g.n(Op.phasor(g.alloc()), freq, 0.0)


def osc(g, freq):
    """sin(2 pi phasor(freq)), as the .dsp files write it."""
    return g.n(Op.sin, phasor(g, freq) * TWO_PI)


def phasor_sin(g):
    return osc(g, 440.0)


def sine_bank(g):
    total = None
    for k in range(16):
        term = osc(g, 110.0 * (k + 1)) * (1.0 / 16)
        total = term if total is None else total + term
    return total


def sos(g):
    return g.sos(osc(g, 220.0), 0.2, 0.4, 0.2, -0.5, 0.25)


def counter(g, period):
    """n mod period, as Faust's integer `(+(1) : %(period)) ~ _ : mem`: exact float32 integers
    wrapped by compare-and-subtract (`accum` with min/max would divide every frame)."""
    count, write = g.history()
    nxt = count + 1.0
    write(g.n(Op.gswitch, g.n(Op.gte, nxt, float(period)), nxt - float(period), nxt))
    return count


def karplus(g):
    """y[n] = x[n] + 0.996 * 0.5 * (y[n-100] + y[n-101]) through g.delay and a history cell."""
    count = counter(g, 44100)
    x = osc(g, 440.0) * g.n(Op.lt, count, 100.0)
    fb_read, close = g.history()
    y = x + fb_read
    delayed = g.delay(y, 99.0, max_delay=128)  # y[n-99]; fb adds one more frame
    prev, write_prev = g.history()
    write_prev(delayed)
    close(0.996 * 0.5 * (delayed + prev))
    return y


def fm_biquad(g):
    modulator = osc(g, 110.0)
    carrier = osc(g, 220.0 + 2 * 110.0 * modulator)
    return g.biquad(carrier, 1000.0, 0.707, 1.0, 0)


PATCHES = {f.__name__: f for f in (phasor_sin, sine_bank, sos, karplus, fm_biquad)}


def compile_patch(name, instances, frames=None):
    g = dgen.Graph(sample_rate=fb.SAMPLE_RATE)
    g.output(0, PATCHES[name](g))
    frames = frames or FRAMES[instances]
    return dgen.compile(g, backend="c", frame_count=frames, instances=instances)


# ---------------------------------------------------------------------- checks
def check(name):
    """dgen == Faust (one instance) and every one of 64 instances == one instance."""
    frames = CHECK_FRAMES.get(name, 4096)
    one = compile_patch(name, 1, frames).run()[0]
    want = fb.faust_render(name, frames)
    err = float(np.abs(one - want).max())
    if err > ATOL:
        raise AssertionError(f"{name}: dgen differs from Faust by {err:.2e} (> {ATOL})")
    many = compile_patch(name, 64, frames).run()[:, 0]
    lanes = float(np.abs(many - one).max())
    if lanes > 2e-5:
        raise AssertionError(f"{name}: instances differ from one instance by {lanes:.2e}")
    return {"max_abs_vs_faust": err, "max_abs_b64_vs_b1": lanes}


# ---------------------------------------------------------------------- timing
def time_dgen(prog, instances, seconds=0.3):
    """samples/s of prog.run() over ~`seconds` of back-to-back calls (an average over the
    window, as the Faust harness measures: a best single call would pick the moments when
    the shared core was free, which the Faust run cannot)."""
    frames = FRAMES[instances]
    out = prog.run(frames=frames)  # warm caches; then the result goes into this array each call
    calls, t0 = 0, time.perf_counter()
    while (t := time.perf_counter()) - t0 < seconds or calls < 2:
        prog.run(frames=frames, out=out)
        calls += 1
    return frames * instances * calls / (t - t0)


def columns():
    return [("dgen", 1), ("dgen", 64), ("scalar", 1), ("vec", 1), ("scalar", 64), ("vec", 64)]


def measure(names, repeats, seconds):
    progs = {(n, b): compile_patch(n, b) for n in names for b in (1, 64)}
    for n in names:
        for m in fb.MODES:
            fb.build(n, m, 256)
    best = {(n, c): 0.0 for n in names for c in columns()}
    for r in range(repeats):
        for n in names:
            for engine, b in columns():
                if engine == "dgen":
                    v = time_dgen(progs[n, b], b, seconds)
                else:
                    v = fb.faust_throughput(n, engine, 256, seconds, b)
                best[n, (engine, b)] = max(best[n, (engine, b)], v)
        print(f"  round {r + 1}/{repeats} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return best


# ---------------------------------------------------------------------- report
def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def rows(names, best):
    out = []
    for n in names:
        v = {f"{e} x{b}": best[n, (e, b)] for e, b in columns()}
        for b in (1, 64):
            v[f"faust best x{b}"] = max(v[f"scalar x{b}"], v[f"vec x{b}"])
            v[f"ratio x{b}"] = v[f"dgen x{b}"] / v[f"faust best x{b}"]
        out.append({"patch": n, **v})
    return out


def print_table(table):
    keys = ["dgen x1", "scalar x1", "vec x1", "ratio x1", "dgen x64", "scalar x64", "vec x64", "ratio x64"]
    print(f"{'patch':<11}" + "".join(f"{k:>12}" for k in keys))
    for row in table:
        cells = [f"{row[k]:>12.2f}" if k.startswith("ratio") else f"{row[k] / 1e6:>12.1f}" for k in keys]
        print(f"{row['patch']:<11}" + "".join(cells))
    for b in (1, 64):
        print(f"geometric mean dgen / faust best, {b} instance(s): {geomean([r[f'ratio x{b}'] for r in table]):.2f}")


def machine():
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    cc = subprocess.run([fb.CC, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"cpu": cpu, "cc": cc, "faust": fb._tool_versions().split("|")[0], "python": platform.python_version()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    ap.add_argument("--seconds", type=float, default=0.3, help="time per cell per round")
    ap.add_argument("--patches", nargs="+", default=list(PATCHES), choices=list(PATCHES))
    ap.add_argument("--cpu", type=int, default=1, help="core to pin to (-1: no pinning)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if not fb.faust_available():
        sys.exit("bench_c: faust is not installed (apt-get install -y faust)")
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    checks = {n: check(n) for n in args.patches}
    load0 = os.getloadavg()
    best = measure(args.patches, args.repeats, args.seconds)
    table = rows(args.patches, best)
    info = {
        **machine(),
        "load_before": load0,
        "load_after": os.getloadavg(),
        "frames_per_call": {f"x{b}": f for b, f in FRAMES.items()},
        "faust_block": 256,
        "repeats": args.repeats,
        "cpu_pin": args.cpu,
    }
    print(
        f"{info['cpu']}, {info['cc']}, {info['faust']}; M samples/s, best of {args.repeats}; "
        f"load average {load0[0]:.2f} -> {info['load_after'][0]:.2f}"
    )
    print_table(table)
    if args.json:
        geo = {f"x{b}": geomean([r[f"ratio x{b}"] for r in table]) for b in (1, 64)}
        Path(args.json).write_text(
            json.dumps({"machine": info, "checks": checks, "table": table, "geomean": geo}, indent=2)
        )


if __name__ == "__main__":
    main()
