"""Reference interpreter speed: one second (44100 frames) of the seed graph on one core.

Goal (issue 4): under 2 s. Run: python benchmarks/reference_speed.py
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import dgen


def seed_graph():
    path = Path(__file__).resolve().parents[1] / "examples" / "seed_training.py"
    spec = importlib.util.spec_from_file_location("seed_training", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(1)[0]


def main(repeats: int = 3) -> None:
    g = seed_graph()
    for dtype in ("float64", "float32"):
        prog = dgen.compile(g, backend="reference", frame_count=44100, dtype=dtype)
        best = float("inf")
        for _ in range(repeats):
            prog.reset()
            t = time.perf_counter()
            prog.run()
            best = min(best, time.perf_counter() - t)
        print(f"reference {dtype}: 44100 frames of the seed graph in {best:.3f} s (best of {repeats}; goal < 2 s)")


if __name__ == "__main__":
    main()
