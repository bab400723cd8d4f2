"""The hop-1 spectral loss kernels alone (runtime/cuda_sdft.py), timed with CUDA events at a
few chunk lengths: random signals, window 64, 4096 frames, B instances. A diagnostic for the
seed graph's training step (bench_cuda.py, cuda_step_breakdown.py).

    python benchmarks/sdft_kernels.py 1024 [--once]    # --once: one call each, for a profiler
"""

import sys
from pathlib import Path

import cupy as cp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dgen.runtime import cuda_sdft  # noqa: E402

W, N = 64, 4096


def event_ms(fn, repeats=20):
    fn()
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeats):
        fn()
    stop.record()
    stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) / repeats


def main(B, once):
    rng = np.random.default_rng(0)
    a, b, ha, hb = (cp.asarray(rng.standard_normal((n, B)), cp.float32) for n in (N, N, W - 1, W - 1))
    adj = cp.full((N, B), 1.0 / N, cp.float32)
    if once:
        cuda_sdft.loss(cp, W, ha, a, hb, b)
        cuda_sdft.grad(cp, W, a, b, adj)
        cp.cuda.Device().synchronize()
        return
    default = cuda_sdft.WARPS
    for chunk in (None, 128, 256, 512):
        cuda_sdft.WARPS = default if chunk is None else max(1, N * B // chunk)
        loss_ms = event_ms(lambda: cuda_sdft.loss(cp, W, ha, a, hb, b))
        grad_ms = event_ms(lambda: cuda_sdft.grad(cp, W, a, b, adj))
        print(f"B={B} chunk {cuda_sdft._chunk(W, N, B)}: loss {loss_ms:.3f} ms, gradient {grad_ms:.3f} ms")
    cuda_sdft.WARPS = default


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024, "--once" in sys.argv)
