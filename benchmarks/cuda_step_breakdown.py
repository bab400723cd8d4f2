"""Where a CUDA training step's time goes: each kernel of the forward and backward programs
and each GPU buffer op (spectral loss), timed with CUDA events, plus the step's wall time
without the timing syncs. A diagnostic for bench_cuda.py.

    python benchmarks/cuda_step_breakdown.py seed 1 biquad 16384     # graph B [graph B ...]
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cuda  # noqa: E402
import cupy as cp  # noqa: E402

import dgen  # noqa: E402
from dgen.runtime import cuda_buffer  # noqa: E402


def _timed(fn, label, log):
    def wrapper(*a, **kw):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        out = fn(*a, **kw)
        stop.record()
        stop.synchronize()
        log.append((label, cp.cuda.get_elapsed_time(start, stop)))
        return out

    return wrapper


def _step_ms(ctx, x, repeats=20):
    times = []
    for _ in range(repeats):
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        ctx.zero_grad()
        ctx.forward_backward(x)
        ctx.step()
        times.append(1e3 * (time.perf_counter() - t0))
    return sorted(times)[len(times) // 2]


def loop_parts(prog, ctx, x, steps=20):
    """GPU ms per step of ctx.train's parts, run eagerly (no CUDA graph) with timed parts: the
    lean step (forward + backward), the optimizer's update, and the rest of the step."""
    log = []
    prog.run_step = _timed(prog.run_step, "run_step", log)
    ctx.optimizer.update = _timed(ctx.optimizer.update, "optimizer update", log)
    prog.cuda_graphs = False
    ctx.train(2, inputs=x, progress=False)
    log.clear()
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    ctx.train(steps, inputs=x, progress=False)
    total = 1e3 * (time.perf_counter() - t0) / steps
    del prog.run_step, ctx.optimizer.update, prog.cuda_graphs
    parts = {}
    for label, ms in log:
        parts[label] = parts.get(label, 0.0) + ms / steps
    rest = total - sum(parts.values())
    shown = ", ".join(f"{k} {v:.3f}" for k, v in parts.items())
    print(f"  train loop, eager and timed: {total:.3f} ms per step; {shown}, rest {rest:.3f}")


def main(name, B):
    g, params, loss, x = bench_cuda.GRAPHS[name](B, True)
    prog = dgen.compile(g, backend="cuda", frame_count=bench_cuda.FRAMES, backwards=True, instances=B)
    x = None if x is None else cp.asarray(x)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=1.0), loss, prog)
    print(f"{name} B={B}: step {_step_ms(ctx, x):.3f} ms (median, untimed kernels)")
    loop_parts(prog, ctx, x)
    log = []
    for kernel_name in ("forward_kernel", "backward_kernel"):
        fns = getattr(prog.lean(loss), kernel_name).build()
        for fn_name, fn in list(fns.items()):
            fns[fn_name] = _timed(fn, f"{kernel_name[:3]} {fn_name}", log)
    saved = dict(cuda_buffer.GPU_BUFFER_OPS)
    for op_name, fn in saved.items():
        cuda_buffer.GPU_BUFFER_OPS[op_name] = _timed(fn, f"buffer {op_name}", log)
    try:
        _step_ms(ctx, x, repeats=1)
    finally:
        cuda_buffer.GPU_BUFFER_OPS.update(saved)
    total = sum(ms for _, ms in log)
    for label, ms in log:
        print(f"  {label:40} {ms:8.3f} ms")
    print(f"  {'sum of timed parts':40} {total:8.3f} ms")


if __name__ == "__main__":
    args = sys.argv[1:] or ["seed", "1", "biquad", "1"]
    for i in range(0, len(args), 2):
        main(args[i], int(args[i + 1]))
