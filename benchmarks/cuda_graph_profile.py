"""Kernel by kernel, what one step of `ctx.train` costs inside its replayed CUDA graph, timed
by torch.profiler (CUPTI sees CuPy's kernels too), with the step's wall time, the GPU's span
and busy time per step, and the longest gaps. A diagnostic for bench_cuda.py; needs PyTorch
with CUDA.

    python benchmarks/cuda_graph_profile.py seed 1024 biquad 1024     # graph B [graph B ...]
"""

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cuda  # noqa: E402
import cupy as cp  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import dgen  # noqa: E402


def busy_time(intervals) -> float:
    """Length of the union of (start, end) intervals."""
    busy, start, end = 0.0, None, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            busy += 0.0 if end is None else end - start
            start, end = a, b
        else:
            end = max(end, b)
    return busy + (0.0 if end is None else end - start)


def main(name, B, steps=200):
    g, params, loss, x = bench_cuda.GRAPHS[name](B, True)
    prog = dgen.compile(g, backend="cuda", frame_count=bench_cuda.FRAMES, backwards=True, instances=B)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=1.0), loss, prog)
    x = None if x is None else cp.asarray(x)
    ctx.train(5, inputs=x, progress=False)  # compile and warm up
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    ctx.train(steps, inputs=x, progress=False)
    wall = (time.perf_counter() - t0) / steps
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        ctx.train(steps, inputs=x, progress=False)
        cp.cuda.Device().synchronize()
    events = [e for e in prof.events() if e.device_type.name == "CUDA"]
    spans = [(e.time_range.start, e.time_range.end) for e in events]
    span = max(b for _, b in spans) - min(a for a, _ in spans)
    print(f"{name} B={B}: {1e3 * wall:.3f} ms per step (without the profiler); graphed: {prog.last_train_graphed}")
    print(f"  GPU per step: span {span / steps:.1f} us, busy {busy_time(spans) / steps:.1f} us")
    totals = {}
    for e in events:
        n, us = totals.get(e.name, (0, 0.0))
        totals[e.name] = (n + 1, us + e.time_range.end - e.time_range.start)
    for kernel, (n, us) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        print(f"  {us / steps:8.1f} us  x{n / steps:4.1f}  {kernel[:70]}")
    gc.collect()


if __name__ == "__main__":
    args = sys.argv[1:] or ["seed", "1024", "biquad", "1024"]
    for i in range(0, len(args), 2):
        main(args[i], int(args[i + 1]))
