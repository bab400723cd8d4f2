"""ctx.train ms per step of bench_cuda's graphs at several scan sizes (runtime/cuda_program.py
SCAN_THREADS: chunks x instances a scan aims for), to tune it on a GPU.

    python benchmarks/cuda_scan_chunks.py 1024 32768:64 65536:32    # B, then SCAN_THREADS:MIN_CHUNK
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cuda  # noqa: E402
import cupy as cp  # noqa: E402

import dgen  # noqa: E402
from dgen.runtime import cuda_program  # noqa: E402


def train_ms(name, B, steps=100):
    g, params, loss, x = bench_cuda.GRAPHS[name](B, True)
    prog = dgen.compile(g, backend="cuda", frame_count=bench_cuda.FRAMES, backwards=True, instances=B)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=1.0), loss, prog)
    x = None if x is None else cp.asarray(x)
    ctx.train(3, inputs=x, progress=False)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        ctx.train(steps, inputs=x, progress=False)
        best = min(best, (time.perf_counter() - t0) / steps * 1e3)
    return best


def main(B, settings):
    for setting in settings:
        threads, min_chunk = (int(v) for v in setting.split(":"))
        cuda_program.SCAN_THREADS, cuda_program.MIN_CHUNK = threads, min_chunk
        chunk = cuda_program.scan_chunk(bench_cuda.FRAMES, B, 4)
        times = ", ".join(f"{name} {train_ms(name, B):.3f} ms" for name in ("seed", "biquad"))
        print(f"B={B} SCAN_THREADS={threads} MIN_CHUNK={min_chunk} (chunk {chunk} at 4 cells): {times}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:] or [f"{cuda_program.SCAN_THREADS}:{cuda_program.MIN_CHUNK}"])
