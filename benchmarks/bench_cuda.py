"""CUDA backend benchmark: forward samples/s and training steps/s at B instances, vs dgen C on
the CPU and PyTorch CUDA.

Workloads (4096 frames; one training step = zero_grad + forward_backward + Adam step):
- seed forward: the seed's signal `sin(2 pi phasor(f)) * phasor(f_lfo)` and its target;
- seed training: the seed's loss `100 * spectral_loss(64) + 0.003 * mse` (the spectral loss
  and its gradient: running sums on the GPU on the CUDA backend, in C on the C backend);
- biquad forward / training: fit (cutoff, q) of a lowpass biquad to a target biquad on white
  noise, mse loss (all on the GPU).
- train-loop (CUDA only): seconds per step of `ctx.train(n)`, the loop on the GPU with one copy
  back per call (runtime/cuda_train.py); n is sized to the time budget.
Peers: dgen C (the device's CPU, instances in SIMD lanes, one thread) and PyTorch CUDA (seed:
`torch_bench.make_seed_step` with cumsum phasors; biquad: `torch_bench.make_biquad_step`, the
recurrence through torchaudio's lfilter ("torch") or torchlpc ("torchlpc"), per-instance
coefficients). Timing: warm-up, then the median of repeated runs within a time budget; CUDA
timings synchronize the device before reading the clock.

    python benchmarks/bench_cuda.py --batches 1 64 1024 16384 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dgen  # noqa: E402
from dgen import Op  # noqa: E402

FRAMES = 4096


def seed_graph(B, training):
    g = dgen.Graph()
    spread = np.linspace(0.8, 1.2, B) if B > 1 else np.ones(1)
    freq = dgen.Parameter(g, 237.0 * spread, name="frequency", min=20.0, max=5000.0)
    lfo = dgen.Parameter(g, np.full(B, 8.5), name="lfo", min=0.1, max=100.0)
    two_pi = 2.0 * math.pi
    learned = g.n(Op.sin, g.n(Op.phasor(g.alloc()), freq.node(), 0.0) * two_pi) * g.n(
        Op.phasor(g.alloc()), lfo.node(), 0.0
    )
    target = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 300.0, 0.0) * two_pi) * g.n(Op.phasor(g.alloc()), 10.0, 0.0)
    if training:
        loss = 100.0 * g.spectral_loss(learned, target, 64) + 0.003 * g.n(Op.mse, learned, target)
        g.output(0, loss)
        return g, [freq, lfo], loss, None
    g.output(0, learned)
    g.output(1, target)
    return g, [freq, lfo], None, None


def biquad_graph(B, training):
    g = dgen.Graph()
    cutoff = dgen.Parameter(g, np.geomspace(300.0, 6000.0, B) if B > 1 else 800.0, name="cutoff", min=20.0, max=20000.0)
    q = dgen.Parameter(g, 0.9, name="q", min=0.1, max=10.0)
    x = g.input(0)
    y = g.biquad(x, cutoff.node(), q.node(), 1.0, 0.0)
    target = g.biquad(x, 1500.0, 0.7, 1.0, 0.0)
    loss = g.n(Op.mse, y, target)
    g.output(0, loss)
    noise = np.random.default_rng(0).uniform(-1, 1, (B, 1, FRAMES)).astype(np.float32)
    return g, [cutoff, q], loss, (noise[0] if B == 1 else noise)


GRAPHS = {"seed": seed_graph, "biquad": biquad_graph}


def timed(fn, sync, budget_s, max_runs=50):
    """Median seconds of fn() after one warm-up run; at least 2 runs unless the first is slow."""
    fn()
    sync()
    times, start = [], time.perf_counter()
    while len(times) < max_runs and (len(times) < 2 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        if times[0] > budget_s:
            break
    return statistics.median(times)


def dgen_forward(backend, name, B, budget):
    g, _, _, x = GRAPHS[name](B, False)
    prog = dgen.compile(g, backend=backend, frame_count=FRAMES, instances=B)
    if backend == "cuda":
        import cupy as cp

        xx = np.zeros((B, 0, FRAMES), np.float32) if x is None else np.asarray(x).reshape(B, -1, FRAMES)
        chans = prog.channel_arrays(xx)  # inputs stay on the GPU: the kernels alone
        prog._sync_parameters()
        fn = lambda: prog.kernel.execute(prog.mem_view(), FRAMES, chans)
        return timed(fn, cp.cuda.Device().synchronize, budget)
    return timed(lambda: prog.run(x), lambda: None, budget)


def dgen_train(backend, name, B, budget):
    g, params, loss, x = GRAPHS[name](B, True)
    prog = dgen.compile(g, backend=backend, frame_count=FRAMES, backwards=True, instances=B)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=1.0), loss, prog)
    if backend == "cuda" and x is not None:
        import cupy as cp

        x = cp.asarray(x)  # inputs on the GPU once, as torch's are (a host array: one upload per step)

    def step():
        ctx.zero_grad()
        ctx.forward_backward(x)
        ctx.step()

    return timed(step, lambda: None, budget)  # each step ends with a copy to the host


def dgen_train_loop(name, B, budget):
    """Seconds per step of `ctx.train(n)` on CUDA: the loop on the GPU, one copy back per call."""
    import cupy as cp

    g, params, loss, x = GRAPHS[name](B, True)
    prog = dgen.compile(g, backend="cuda", frame_count=FRAMES, backwards=True, instances=B)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=1.0), loss, prog)
    x = None if x is None else cp.asarray(x)
    ctx.train(2, inputs=x, progress=False)  # compile and warm up
    t0 = time.perf_counter()
    ctx.train(5, inputs=x, progress=False)
    steps = max(5, min(500, int(budget / max((time.perf_counter() - t0) / 5, 1e-6))))
    per_step = []
    for _ in range(3):  # median of three calls: each call captures its graph anew (~5 ms)
        t0 = time.perf_counter()
        ctx.train(steps, inputs=x, progress=False)
        per_step.append((time.perf_counter() - t0) / steps)
    elapsed = statistics.median(per_step)
    if not prog.last_train_graphed:
        print(f"  ({name} B={B}: steps not replayed as a CUDA graph: {prog.last_train_capture_error})")
    return elapsed


def torch_train(name, B, budget, recurrence="lfilter"):
    """PyTorch CUDA peer step: seed with cumsum phasors; biquad with torchaudio's lfilter
    (`recurrence="lfilter"`) or torch ops plus torchlpc's sample_wise_lpc ("torchlpc")."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
    import torch_bench as tb

    if name == "seed":
        step, _ = tb.make_seed_step(B, FRAMES, "cuda", tb.phasor_cumsum)
    else:
        biquad = {"lfilter": tb.biquad_lfilter, "torchlpc": tb.biquad_lpc}[recurrence]
        step, _ = tb.make_biquad_step(B, FRAMES, "cuda", biquad)
    return timed(step, torch.cuda.synchronize, budget)


def _release_gpu_memory(backend):
    """Hand cached blocks back to the driver after each measurement: PyTorch's allocator kept
    ~100 GiB after its out-of-memory at B = 16384, and the next CuPy run then failed too."""
    if backend.startswith("torch") and "torch" in sys.modules:
        sys.modules["torch"].cuda.empty_cache()
    if backend == "cuda" and "cupy" in sys.modules:
        sys.modules["cupy"].get_default_memory_pool().free_all_blocks()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 16384])
    ap.add_argument("--backends", nargs="+", default=["cuda", "c", "torch", "torchlpc"])
    ap.add_argument("--graphs", nargs="+", default=["seed", "biquad"])
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of repeats per measurement")
    ap.add_argument("--max-c-batch", type=int, default=1024, help="largest B timed on the C backend")
    ap.add_argument(
        "--max-host-train-batch",
        type=int,
        default=64,
        help="largest B for seed training on dgen C (its spectral loss is the slow part there)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []

    def record(what, backend, name, B, secs):
        row = dict(
            what=what,
            backend=backend,
            graph=name,
            B=B,
            seconds=secs,
            samples_per_s=B * FRAMES / secs if what == "forward" else None,
            steps_per_s=1.0 / secs if what != "forward" else None,
        )
        rows.append(row)
        rate = f"{row['samples_per_s']:.3e} samples/s" if what == "forward" else f"{1 / secs:9.2f} steps/s"
        print(f"{what:8} {name:7} {backend:6} B={B:<6} {secs * 1e3:10.3f} ms  {rate}", flush=True)

    for name in args.graphs:
        for B in args.batches:
            for backend in args.backends:
                if backend == "c" and B > args.max_c_batch:
                    continue
                try:
                    if not backend.startswith("torch"):
                        record("forward", backend, name, B, dgen_forward(backend, name, B, args.budget))
                        if name == "seed" and backend == "c" and B > args.max_host_train_batch:
                            continue
                        record("train", backend, name, B, dgen_train(backend, name, B, args.budget))
                        if backend == "cuda":
                            record("train-loop", backend, name, B, dgen_train_loop(name, B, args.budget))
                    elif backend == "torch":
                        record("train", "torch", name, B, torch_train(name, B, args.budget))
                    elif name == "biquad":  # torchlpc: the biquad's poles through torchlpc
                        record("train", backend, name, B, torch_train(name, B, args.budget, "torchlpc"))
                except Exception as e:  # a missing peer or an out-of-memory: note it, go on
                    print(f"{name} {backend} B={B}: {type(e).__name__}: {e}", flush=True)
                    rows.append(dict(graph=name, backend=backend, B=B, error=f"{type(e).__name__}: {e}"))
                finally:
                    _release_gpu_memory(backend)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
