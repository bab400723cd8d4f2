"""Soak test of the C backend: render a long stretch of audio (default one hour) in blocks
of 64 frames and check three things (docs/reliability.md, "Soak"):

1. no drift: the 64-frame blocks equal, bit for bit, one long render of the same patch
   (a second program run in chunks of 2**20 frames), compared chunk by chunk;
2. no memory growth: RSS and Python allocations (tracemalloc) after warm-up vs at the end;
3. no slowdown when the feedback decays into denormals: time per block while the signal is
   loud, while it passes through the denormal range, and once it is silent.

The patch: a vibrato sine (two phasors) plus a sawtooth (a third phasor), times an
envelope that decays exponentially (a history cell) so that it crosses the float32 denormal
range at 61-71% of the run; a lowpass biquad; a feedback comb (delay of 0.1 s, feedback
0.7) that rings on and then decays into denormals too. The C kernels flush denormals
(FTZ/DAZ); `--control-no-ftz` renders the same patch with flushing removed from the
generated code to show what the check guards against.

    python benchmarks/soak.py                      # one hour (about 3 minutes on 2 cores)
    python benchmarks/soak.py --seconds 600        # ten minutes
    python benchmarks/soak.py --seconds 120 --control-no-ftz
    python benchmarks/soak.py --json soak.json     # also write the numbers
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dgen  # noqa: E402
from dgen import Op  # noqa: E402

SR = 44100
BLOCK = 64
LONG_CHUNK = 2**20
WINDOWS = {"loud": (0.02, 0.10), "denormal": (0.61, 0.70), "silent": (0.90, 1.00)}  # fractions of the run


def patch(total_frames: int):
    """The soak patch; the envelope reaches float32's smallest normal (1.18e-38) at 61% of the run."""
    g = dgen.Graph(sample_rate=SR)
    lfo = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 0.25, 0.0) * (2 * math.pi))
    vib = g.n(Op.phasor(g.alloc()), 220.0 * (1.0 + 0.01 * lfo), 0.0)
    saw_phase = g.n(Op.phasor(g.alloc()), 331.0, 0.0)
    saw = saw_phase * 2.0 - 1.0
    rate = math.log(1.18e-38) / (0.61 * total_frames)
    env_prev, env_write = g.history(g.alloc(init=1.0))
    env = env_write(env_prev * math.exp(rate))
    tone = (g.n(Op.sin, vib * (2 * math.pi)) + 0.5 * saw) * env
    low = g.biquad(tone, 2000.0, 0.9, 1.0, 0.0)
    fb_prev, fb_write = g.history()
    comb = low + 0.7 * fb_prev
    fb_write(g.delay(comb, SR * 0.1 - 1, SR * 0.1))  # with the history's frame: 0.1 s round trip
    g.output(0, comb)
    g.output(1, saw_phase)  # to measure float32 phase accumulation against the exact phase
    g.output(2, env)
    return g


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def without_ftz(prog):
    """Recompile `prog`'s kernel with denormal flushing removed (the control run)."""
    kernel = prog.kernel
    original = kernel.render

    def render(lanes):
        src = original(lanes)
        text = src.source.replace("_mm_setcsr(dgen_saved_csr_ | 0x8040u)", "_mm_setcsr(dgen_saved_csr_)")
        text = text.replace("(dgen_saved_fpcr_ | (UINT64_C(1) << 24))", "(dgen_saved_fpcr_)")
        assert text != src.source, "no FTZ code found to remove"
        return type(src)(text, src.steps, src.lanes, src.reverse, src.tile)

    kernel.render = render
    kernel._builds.clear()
    kernel.build(prog.lanes)
    return prog


def window_of(frame: int, total: int):
    """The timing window a frame falls in, by its position in the run (or None)."""
    x = frame / total
    for name, (lo, hi) in WINDOWS.items():
        if lo <= x < hi:
            return name
    return None


def leak_probe(prog, blocks=20000) -> float:
    """Python bytes still allocated per 64-frame run() after `blocks` runs (tracemalloc)."""
    for _ in range(1000):
        prog.run(frames=BLOCK)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(blocks):
        prog.run(frames=BLOCK)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / blocks


def soak(seconds: float, control_no_ftz=False, progress=True) -> dict:
    chunk = LONG_CHUNK if seconds >= 600 else 2**16
    total = max(1, math.ceil(seconds * SR / chunk)) * chunk
    g = patch(total)
    blocks = dgen.compile(g, backend="c", frame_count=BLOCK)
    long = dgen.compile(g, backend="c", frame_count=chunk)
    if control_no_ftz:
        without_ftz(blocks)
        without_ftz(long)
    # a separate program for the tracemalloc probe: the soak programs start from frame 0
    leak = leak_probe(dgen.compile(g, backend="c", frame_count=BLOCK))
    n_chunks, per = total // chunk, chunk // BLOCK
    # the bookkeeping is preallocated and written once (np.full, not np.zeros: calloc'd pages
    # would join the RSS only as they are filled, and look like a leak)
    block_ns = np.full(total // BLOCK, -1, np.int64)
    chunk_ns = np.full(n_chunks, -1, np.int64)
    rss = np.full(n_chunks, -1.0)
    pyblocks = np.full(n_chunks, -1, np.int64)
    phase = np.full(n_chunks, np.nan)
    mismatches, max_diff = 0, 0.0
    tiny = dict.fromkeys(WINDOWS, 0)
    inc = np.float64(np.float32(np.float32(331.0) / np.float32(SR)))  # the sawtooth's float32 increment
    perf = time.perf_counter_ns
    run = blocks.run
    t_start = time.perf_counter()
    for k in range(n_chunks):
        t0 = perf()
        y_long = long.run(frames=chunk)
        chunk_ns[k] = perf() - t0
        y_blocks = np.empty_like(y_long)
        for j in range(per):
            t0 = perf()
            y = run(frames=BLOCK)
            block_ns[k * per + j] = perf() - t0
            y_blocks[:, j * BLOCK : (j + 1) * BLOCK] = y
        diff = y_blocks != y_long
        if diff.any():
            mismatches += int(diff.sum())
            max_diff = max(max_diff, float(np.max(np.abs(y_blocks.astype(np.float64) - y_long))))
        name = window_of(k * chunk, total)
        if name:
            sig = np.abs(y_long[0])
            tiny[name] += int(np.sum((sig > 0) & (sig < np.finfo(np.float32).tiny)))
        # float32 phase accumulation vs exact: phasor output at frame n = n * inc (mod 1)
        n = (k + 1) * chunk - 1
        phase[k] = float(y_long[1, -1]) - math.fmod(n * inc, 1.0)
        del y_long, y_blocks, diff
        rss[k], pyblocks[k] = rss_mb(), sys.getallocatedblocks()
        if progress and (k % max(1, n_chunks // 20) == 0 or k == n_chunks - 1):
            print(
                f"  {(k + 1) / n_chunks:6.1%}  {(k + 1) * chunk / SR:8.1f} s of audio  "
                f"{time.perf_counter() - t_start:7.1f} s elapsed  rss {rss[k]:.1f} MB",
                flush=True,
            )
    elapsed = time.perf_counter() - t_start
    drift = np.unwrap(phase, period=1.0)  # cycles; grows slowly chunk to chunk
    phase_drift = float(drift[-1])

    def window(values, starts, name):
        lo, hi = WINDOWS[name]
        sel = (starts >= lo * total) & (starts < hi * total)
        return values[sel]

    block_starts = np.arange(len(block_ns)) * BLOCK
    chunk_starts = np.arange(n_chunks) * chunk + chunk // 2  # a chunk belongs where its middle is
    block_us = {w: float(np.median(window(block_ns, block_starts, w))) / 1e3 for w in WINDOWS}
    long_ns = {w: float(np.median(window(chunk_ns, chunk_starts, w))) / chunk for w in WINDOWS}
    tenth = max(1, n_chunks // 10)
    warm = slice(min(1, n_chunks - 1), min(1, n_chunks - 1) + tenth)  # after the first chunk
    return {
        "seconds_of_audio": total / SR,
        "frames": total,
        "block": BLOCK,
        "long_chunk": chunk,
        "control_no_ftz": control_no_ftz,
        "wall_s": elapsed,
        "realtime_factor": (total / SR) / elapsed,
        "mismatching_samples": mismatches,
        "max_abs_diff": max_diff,
        "block_us_median": block_us,
        "long_ns_per_frame_median": long_ns,
        "slowdown_block_denormal_vs_loud": block_us["denormal"] / block_us["loud"],
        "slowdown_block_silent_vs_loud": block_us["silent"] / block_us["loud"],
        "slowdown_long_denormal_vs_loud": long_ns["denormal"] / long_ns["loud"],
        "slowdown_long_silent_vs_loud": long_ns["silent"] / long_ns["loud"],
        "denormal_output_samples": tiny,
        "phasor_phase_drift_cycles": phase_drift,  # float32 accumulation vs exact, at the end
        "phasor_freq_error_ppm": phase_drift / (total * inc) * 1e6,
        "phasor_drift_max_step_cycles": float(np.max(np.abs(np.diff(drift)))) if n_chunks > 1 else 0.0,
        "memory": {
            "rss_mb_start": float(np.median(rss[warm])),
            "rss_mb_end": float(np.median(rss[-tenth:])),
            "rss_growth_mb": float(np.median(rss[-tenth:]) - np.median(rss[warm])),
            "rss_max_mb": float(rss.max()),
            "py_blocks_growth": int(np.median(pyblocks[-tenth:]) - np.median(pyblocks[warm])),
            "tracemalloc_bytes_per_run": leak,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def verdict(r: dict, control=False) -> list[str]:
    """The checks; a control run is expected to fail the slowdown one."""
    problems = []
    if r["mismatching_samples"]:
        problems.append(f"drift: {r['mismatching_samples']} samples differ (max {r['max_abs_diff']:.3g})")
    m = r["memory"]
    if m["rss_growth_mb"] > 4:
        problems.append(f"RSS grew by {m['rss_growth_mb']:.1f} MB")
    if m["py_blocks_growth"] > 1000:
        problems.append(f"Python objects grew by {m['py_blocks_growth']} blocks")
    if m["tracemalloc_bytes_per_run"] > 1:
        problems.append(f"{m['tracemalloc_bytes_per_run']:.1f} bytes kept per run() (tracemalloc)")
    if sum(r["denormal_output_samples"].values()):
        problems.append(f"denormal outputs (not flushed): {r['denormal_output_samples']}")
    for key in (
        "slowdown_block_denormal_vs_loud",
        "slowdown_block_silent_vs_loud",
        "slowdown_long_denormal_vs_loud",
        "slowdown_long_silent_vs_loud",
    ):
        if r[key] > 1.25:
            problems.append(f"{key} = {r[key]:.2f}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3600.0, help="seconds of audio (default 3600)")
    ap.add_argument("--control-no-ftz", action="store_true", help="remove denormal flushing (expect a slowdown)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    r = soak(args.seconds, args.control_no_ftz, progress=not args.quiet)
    print(json.dumps(r, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    problems = verdict(r)
    if args.control_no_ftz:
        print("control run (no FTZ):", "; ".join(problems) or "no slowdown seen")
        return 0
    print("OK" if not problems else "FAILED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
