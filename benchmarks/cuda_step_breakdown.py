"""Where a CUDA training step's time goes: each kernel of the forward and backward programs,
timed with CUDA events (one biquad-fit step at B instances). A diagnostic for bench_cuda.py.

    python benchmarks/cuda_step_breakdown.py 16384
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cuda  # noqa: E402
import cupy as cp  # noqa: E402

import dgen  # noqa: E402


def main(B):
    g, params, loss, x = bench_cuda.biquad_graph(B, True)
    prog = dgen.compile(g, backend="cuda", frame_count=4096, backwards=True, instances=B)
    prog.forward_backward(loss, x)  # compile and warm up
    for kernel_name in ("forward_kernel", "backward_kernel"):
        k = getattr(prog.gradient(loss), kernel_name)
        fns = k.build()
        for name, fn in list(fns.items()):
            def timed_fn(*a, _fn=fn, _name=name, _k=kernel_name, **kw):
                start, stop = cp.cuda.Event(), cp.cuda.Event()
                start.record()
                _fn(*a, **kw)
                stop.record()
                stop.synchronize()
                print(f"  {_k:16} {_name:18} grid={a[0]} block={a[1]} "
                      f"{cp.cuda.get_elapsed_time(start, stop):8.3f} ms")
            fns[name] = timed_fn
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    prog.forward_backward(loss, x)
    cp.cuda.Device().synchronize()
    print(f"B={B}: one forward_backward {1e3 * (time.perf_counter() - t0):.2f} ms (with the timing syncs)")
    for _ in range(2):
        t0 = time.perf_counter()
        prog.reset()
        prog.forward._sync_parameters()
        cp.cuda.Device().synchronize()
        t1 = time.perf_counter()
        prog.forward.channel_arrays(np.asarray(x).reshape(B, 1, -1))
        cp.cuda.Device().synchronize()
        print(f"  reset+params {1e3 * (t1 - t0):.2f} ms, input upload {1e3 * (time.perf_counter() - t1):.2f} ms")


if __name__ == "__main__":
    for B in sys.argv[1:] or ["16384"]:
        main(int(B))
