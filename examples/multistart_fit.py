"""Multi-start fitting with instances: B copies of one patch train at once, report the best.

The target is an FM tone: carrier 220 Hz, modulator 440 Hz, modulation index 3.7,
amplitude 0.5. The model is the same patch with the index and the amplitude learnable.
The spectral loss is far from convex in the index (sideband levels follow Bessel functions
of it): with the amplitude free too, starts above about 6 slide into a local minimum near
7.2 and starts below about 3 into one near 2.9 (made up for by a louder amplitude).

So the program is compiled with `instances=B`: each instance is an independent copy of
the graph with its own parameter values (one SIMD lane each on the C backend), started at
indices spread evenly over 0.25-7.75. All train in the same calls; the instance with the
lowest final loss is the answer (index within 0.01 and amplitude within 0.005).

    python examples/multistart_fit.py --out out          # 16 starts
    python examples/multistart_fit.py --out out --fast   # 8 starts, fewer steps

Writes multistart_fit.wav (the best fit, then the target) and multistart_fit_loss.png.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

import dgen
from dgen import Op
from dgen.cli import default_backend

SR = 44100
CARRIER, RATIO = 220.0, 2.0
TARGET_INDEX, TARGET_AMP = 3.7, 0.5
LOWEST, HIGHEST = 0.25, 7.75  # the spread of start indices


def fm(g, index, amp):
    """amp * sin(2 pi fc t + index * sin(2 pi fm t)), fm = RATIO * fc."""
    mod = g.n(Op.sin, g.n(Op.phasor(g.alloc()), CARRIER * RATIO, 0.0) * (2 * math.pi))
    carrier = g.n(Op.phasor(g.alloc()), CARRIER, 0.0) * (2 * math.pi)
    return amp * g.n(Op.sin, carrier + index * mod)


def build(instances: int):
    g = dgen.Graph(SR)
    index = dgen.Parameter(g, np.linspace(LOWEST, HIGHEST, instances), name="index", min=0.0, max=12.0)
    amp = dgen.Parameter(g, np.full(instances, 0.25), name="amp", min=0.0, max=2.0)
    y = fm(g, index.node(), amp.node())
    target = fm(g, TARGET_INDEX, TARGET_AMP)
    loss = g.multi_spectral_loss(y, target, windows=(256, 1024))
    g.output(0, y)
    g.output(1, target)
    return g, index, amp, loss


def fit(instances: int, steps: int, frames: int, backend: str):
    g, index, amp, loss = build(instances)
    prog = dgen.compile(g, backend=backend, frame_count=frames, backwards=True, instances=instances)
    ctx = dgen.TrainingContext([index, amp], dgen.Adam(lr=0.1, beta1=0.5), loss, prog)

    def schedule(ctx):  # a decaying step size settles without overshoot
        ctx.optimizer.lr *= 0.96

    ctx.train(steps, callback=schedule)
    ctx.zero_grad()
    final = np.asarray(ctx.forward_backward())  # the loss per instance at the fitted values
    return prog, np.asarray(index.value), np.asarray(amp.value), final, ctx.history


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out", help="output folder")
    ap.add_argument("--fast", action="store_true", help="8 starts and 60 steps instead of 16 and 120")
    ap.add_argument("--backend", default=None, help="c (default when a compiler exists) or reference")
    args = ap.parse_args(argv)
    out, backend = Path(args.out), args.backend or default_backend()
    out.mkdir(parents=True, exist_ok=True)
    instances, steps = (8, 60) if args.fast else (16, 120)
    start = time.perf_counter()

    prog, indices, amps, losses, history = fit(instances, steps, 4096, backend)
    best = int(np.argmin(losses))
    starts = np.linspace(LOWEST, HIGHEST, instances)
    for k in range(instances):
        mark = "  <- best" if k == best else ""
        print(f"  start index {starts[k]:5.2f} -> {indices[k]:6.3f}, amp {amps[k]:.3f}, loss {losses[k]:9.4g}{mark}")
    converged = int(np.sum(np.abs(indices - TARGET_INDEX) < 0.01))
    print(
        f"best: index {indices[best]:.4f}, amp {amps[best]:.4f} (target {TARGET_INDEX}, {TARGET_AMP}); "
        f"{converged}/{instances} starts converged; {time.perf_counter() - start:.1f} s on {backend}"
    )

    prog.reset()
    y = prog.run(frames=SR // 2)[best]
    dgen.save_audio(out / "multistart_fit.wav", np.concatenate([y[0], y[1]]), SR)
    dgen.plot_history(
        history,
        out / "multistart_fit_loss.png",
        title="multi-start fit (best instance)",
        targets={"index": TARGET_INDEX, "amp": TARGET_AMP},
    )
    ok = abs(indices[best] - TARGET_INDEX) < 0.01 and abs(amps[best] - TARGET_AMP) < 0.005
    return {
        "index": float(indices[best]),
        "amp": float(amps[best]),
        "best": best,
        "converged": converged,
        "instances": instances,
        "ok": ok,
        "files": [out / "multistart_fit.wav", out / "multistart_fit_loss.png"],
    }


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
