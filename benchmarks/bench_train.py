"""Training step time, dgen vs PyTorch on the CPU (issue 6): one core, 4096 frames.

Workloads (one training step = forward + backward + an SGD update of the parameters):
- one-pole: fit the coefficient `a` of `y[n] = (1-a) x[n] + a y[n-1]` to a target made with
  a = 0.9 from white noise, mse loss. dgen: x and the target are graph inputs; PyTorch:
  torchlpc's `sample_wise_lpc` (`torch_bench.make_onepole_step`).
- seed: the seed example's graph, `sin(2 pi phasor(f)) * phasor(f_lfo)` against 300 Hz / 10 Hz,
  loss `100 * spectral_loss(64) + 0.003 * mse`. PyTorch: `torch_bench.make_seed_step`, the phasors
  as an autograd per-sample loop (the issue's peer) and, for information, vectorised with cumsum.

dgen's timed step is what a user runs: `ctx.zero_grad(); ctx.forward_backward(inputs); ctx.step()`
through `dgen.TrainingContext`; "ctx.train per step" is `ctx.train(20)` divided by 20 (the
training loop a user runs for many steps: on the C backend it keeps Python out of each step,
train/fast.py); "bare" is `prog.forward_backward` alone. The reference backend
(float64 NumPy interpreter) is shown for information (`--no-reference` skips it).

Timing: every contender of one workload runs round-robin (interleaved) until each has had
`--rounds` rounds or the workload's time budget is spent. A round times a batch of calls
sized to take about 2 ms, after one untimed call when a call is shorter than that (a training
loop runs the same step back to back, so its buffers are in cache). The median over rounds
is reported (the minimum too, for information). Ratios are peer ms / dgen ms of medians from
the same run. The process is pinned to one core and torch to one thread; objects made before
timing are frozen out of the garbage collector (`gc.freeze`), for every contender.

    python benchmarks/bench_train.py                 # table
    python benchmarks/bench_train.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT / "peers"))
import dgen  # noqa: E402
from dgen import Op  # noqa: E402

FRAMES = 4096
TRAIN_STEPS = 20  # steps per timed ctx.train call (reported per step)


# ----------------------------------------------------------------------------- dgen graphs


def _values(B, v):
    return np.full(B, float(v)) if B > 1 else float(v)


def onepole_graph(B):
    """(graph, params, loss) of the one-pole fit; inputs: channel 0 = x, channel 1 = target."""
    g = dgen.Graph()
    a = dgen.Parameter(g, _values(B, 0.5), name="a")
    prev, write = g.history()
    y = write((1.0 - a.node()) * g.input(0) + a.node() * prev)
    loss = g.n(Op.mse, y, g.input(1))
    g.output(0, loss)
    return g, [a], loss


def onepole_inputs(B, frames=FRAMES):
    """White noise and the a = 0.9 one-pole of it, (B, 2, frames) float32 (or (2, frames))."""
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (B, frames))
    y, prev = np.empty_like(x), np.zeros(B)
    for n in range(frames):
        prev = 0.1 * x[:, n] + 0.9 * prev
        y[:, n] = prev
    both = np.stack([x, y], axis=1).astype(np.float32)
    return both[0] if B == 1 else both


def seed_graph(B):
    """(graph, params, loss) of the seed example's loss (DGen.md)."""
    g = dgen.Graph()
    freq = dgen.Parameter(g, _values(B, 237.0), name="frequency")
    lfo = dgen.Parameter(g, _values(B, 8.5), name="lfo_frequency")
    two_pi = 2.0 * math.pi

    def voice(f, f_lfo):
        tone = g.n(Op.sin, g.n(Op.phasor(g.alloc()), f, 0.0) * two_pi)
        return tone * g.n(Op.phasor(g.alloc()), f_lfo, 0.0)

    learned, target = voice(freq.node(), lfo.node()), voice(300.0, 10.0)
    loss = 100.0 * g.spectral_loss(learned, target, 64) + 0.003 * g.n(Op.mse, learned, target)
    g.output(0, loss)
    return g, [freq, lfo], loss


def dgen_steps(kind, B, backend, lr):
    """{label: callable} for one dgen backend: the TrainingContext step and the bare one."""
    g, params, loss = (onepole_graph if kind == "onepole" else seed_graph)(B)
    prog = dgen.compile(g, backend=backend, frame_count=FRAMES, instances=B, backwards=True)
    ctx = dgen.TrainingContext(params, dgen.SGD(lr), loss, prog)
    inputs = onepole_inputs(B) if kind == "onepole" else None

    def step():
        ctx.zero_grad()
        ctx.forward_backward(inputs)
        ctx.step()

    def bare():
        prog.forward_backward(loss, inputs, params)

    def loop():  # TRAIN_STEPS steps of the training loop (train_steps: no Python per step)
        ctx.train(TRAIN_STEPS, inputs, progress=False)

    name = "dgen C" if backend == "c" else f"dgen {backend}"
    fns = {f"{name} step": step, f"{name} forward_backward": bare}
    if backend == "c":
        fns[f"{name} ctx.train x{TRAIN_STEPS}"] = loop
    return fns


def torch_steps(kind, B):
    import torch_bench as tb

    if kind == "onepole":
        step, _ = tb.make_onepole_step(B, FRAMES, "cpu")
        return {"torchlpc step": step}
    loop, _ = tb.make_seed_step(B, FRAMES, "cpu", tb.phasor_loop)
    cumsum, _ = tb.make_seed_step(B, FRAMES, "cpu", tb.phasor_cumsum)
    return {"torch per-sample loop step": loop, "torch cumsum step": cumsum}


# ----------------------------------------------------------------------------- timing


def _batch_size(fn, target_s=0.002):
    dt = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        dt = min(dt, time.perf_counter() - t0)
    return max(1, min(200, int(target_s / max(dt, 1e-7))))


def interleaved(fns, rounds, budget_s):
    """Median ms per call of each fn, timed round-robin: one batch of calls per fn per round."""
    for fn in fns.values():  # warm-up: compile, caches, first-call allocations
        fn()
        fn()
    batch = {k: _batch_size(fn) for k, fn in fns.items()}
    warm = {k: batch[k] > 1 for k in fns}  # steps under ~2 ms: time them warm, as in a training loop
    times = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 3 and time.perf_counter() - start > budget_s:
            break
        for k, fn in fns.items():
            if warm[k]:  # untimed: the previous contender evicted this one's buffers from cache
                fn()
            t0 = time.perf_counter()
            for _ in range(batch[k]):
                fn()
            times[k].append((time.perf_counter() - t0) * 1e3 / batch[k])
    return {
        k: {"ms": statistics.median(v), "min_ms": min(v), "rounds": len(v), "batch": batch[k]} for k, v in times.items()
    }


def workload(kind, B, args):
    fns = dict(dgen_steps(kind, B, "c", 0.01 if kind == "onepole" else 1e-3))
    if args.reference:
        fns.update(dgen_steps(kind, B, "reference", 0.01 if kind == "onepole" else 1e-3))
    fns.update(torch_steps(kind, B))
    budget = args.budget * (3 if kind == "seed" else 1)
    # Park the ~200k objects of torch, dgen and the harness in the permanent generation: a full
    # garbage collection otherwise scans them all (tens of ms) whenever one is triggered, and it
    # lands in whichever contender happens to be running (in one run: dgen step 3.2 ms median at
    # B=64 with 1.0 ms min). Applies to every contender alike.
    gc.collect()
    gc.freeze()
    res = interleaved(fns, args.rounds, budget)
    for key in [k for k in res if k.endswith(f"ctx.train x{TRAIN_STEPS}")]:
        r = res.pop(key)
        per = {**r, "ms": r["ms"] / TRAIN_STEPS, "min_ms": r["min_ms"] / TRAIN_STEPS}
        res[key.replace(f"ctx.train x{TRAIN_STEPS}", "ctx.train per step")] = per
    return res


def ratios(kind, res):
    """Peer ms / dgen C ms for every peer and both dgen C timings."""
    peers = ["torchlpc step"] if kind == "onepole" else ["torch per-sample loop step", "torch cumsum step"]
    out = {}
    for mine in ("dgen C step", "dgen C ctx.train per step", "dgen C forward_backward"):
        for peer in peers:
            out[f"{peer} / {mine}"] = res[peer]["ms"] / res[mine]["ms"]
    return out


# ----------------------------------------------------------------------------- main


def pin(cpu):
    import torch

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu if cpu in cpus else cpus[-1]})
        return sorted(os.sched_getaffinity(0))
    return None


def machine(cores):
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "pinned_cores": cores,
        "loadavg_start": list(os.getloadavg()),
    }


def print_table(results):
    for key, res in results.items():
        print(f"\n{key}")
        for name, r in res["timings"].items():
            print(f"  {name:<34}{r['ms']:>10.3f} ms  (min {r['min_ms']:.3f}; {r['rounds']} rounds x {r['batch']})")
        for name, v in res["ratios"].items():
            print(f"  {name:<58}{v:>8.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["onepole", "seed"], choices=["onepole", "seed"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per workload (seed: 3x)")
    ap.add_argument("--cpu", type=int, default=1, help="core to pin to (the last allowed one if absent)")
    ap.add_argument("--no-reference", dest="reference", action="store_false")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-': stdout only)")
    args = ap.parse_args(argv)
    info = machine(pin(args.cpu))
    results = {}
    for kind in args.workloads:
        for B in args.batches:
            res = workload(kind, B, args)
            results[f"{kind} B={B}"] = {"timings": res, "ratios": ratios(kind, res)}
            if args.json != "-":
                print_table({f"{kind} B={B}": results[f"{kind} B={B}"]})
    info["loadavg_end"] = list(os.getloadavg())
    doc = {"machine": info, "frames": FRAMES, "results": results}
    if args.json == "-":
        print(json.dumps(doc, indent=1))
    else:
        print(f"\nload average: start {info['loadavg_start']}, end {info['loadavg_end']}")
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
