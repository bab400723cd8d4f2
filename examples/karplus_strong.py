"""Karplus-Strong plucked strings: a strummed E minor chord, rendered to WAV.

Each string is a noise burst (one period long) into a loop: the output is delayed by
`g.delay` (fractional, linear interpolation), averaged with its previous sample (the
two-point lowpass that makes high partials die away first), scaled by a decay factor and fed
back through a history cell:

    y[n] = burst[n] + fb[n],   fb[n+1] = rho * (y(n - d) + y(n - d - 1)) / 2

so the loop is d + 1.5 samples long and the pitch is sr / (d + 1.5). The noise is an exact
float32 LCG in the graph (ZX81: s := (75 s + 74) mod 65537), so every backend makes the
same burst.

    python examples/karplus_strong.py --out out          # 3 s, karplus_strong.wav
    python examples/karplus_strong.py --out out --fast   # 1 s
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import dgen
from dgen import Op
from dgen.cli import default_backend

SR = 44100
CHORD = (82.41, 123.47, 164.81, 196.00, 246.94, 329.63)  # E2 B2 E3 G3 B3 E4
STRUM = 0.05  # seconds between strings
RHO = 0.996  # loop gain per period


def lcg_noise(g):
    """Uniform noise in [-1, 1) from an LCG whose arithmetic is exact in float32."""
    s, write = g.history(g.alloc(init=1.0))
    write(g.n(Op.mod, s * 75.0 + 74.0, 65537.0))
    return s * (2.0 / 65537.0) - 1.0


def string(g, noise, t, freq: float, start: float):
    """One plucked string sounding `freq` Hz, plucked at `start` seconds."""
    period = SR / freq
    begin = round(start * SR)
    gate = g.n(Op.gte, t, float(begin)) * g.n(Op.lt, t, float(begin) + period)
    burst = noise * gate
    fb, close = g.history()
    y = burst + fb
    delayed = g.delay(y, period - 1.5, max_delay=period)
    prev, write_prev = g.history()
    write_prev(delayed)
    close(RHO * 0.5 * (delayed + prev))
    return y


def build(g):
    """The strummed chord (the whole patch; also usable with `dgen render`)."""
    noise = lcg_noise(g)
    t = g.n(Op.accum(g.alloc()), 1.0, 0.0)  # frame counter
    mix = None
    for k, f in enumerate(CHORD):
        y = string(g, noise, t, f, k * STRUM)
        mix = y if mix is None else mix + y
    return mix * (1.5 / len(CHORD))


def pitch(x: np.ndarray, lo: float = 60.0, hi: float = 500.0) -> float:
    """Fundamental by autocorrelation (parabolic peak), in Hz."""
    x = x - x.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * len(x))) ** 2)[: len(x)]
    a, b = int(SR / hi), int(SR / lo)
    k = a + int(np.argmax(ac[a:b]))
    y0, y1, y2 = ac[k - 1], ac[k], ac[k + 1]
    return SR / (k + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out", help="output folder")
    ap.add_argument("--fast", action="store_true", help="1 s instead of 3 s")
    ap.add_argument("--backend", default=None, help="c (default when a compiler exists) or reference")
    args = ap.parse_args(argv)
    out, backend = Path(args.out), args.backend or default_backend()
    out.mkdir(parents=True, exist_ok=True)
    frames = SR * (1 if args.fast else 3)
    start = time.perf_counter()

    g = dgen.Graph(SR)
    g.output(0, build(g))
    y = dgen.compile(g, backend=backend, frame_count=frames).run()[0]
    dgen.save_audio(out / "karplus_strong.wav", y, SR)

    # the low E alone rings for STRUM seconds before the next string starts
    one = dgen.Graph(SR)
    t = one.n(Op.accum(one.alloc()), 1.0, 0.0)
    one.output(0, string(one, lcg_noise(one), t, CHORD[0], 0.0))
    single = dgen.compile(one, backend=backend, frame_count=SR // 2).run()[0]
    measured = pitch(single[2000:])
    head, tail = np.sqrt(np.mean(y[: SR // 4] ** 2)), np.sqrt(np.mean(y[-SR // 4 :] ** 2))
    print(
        f"{len(CHORD)} strings, {frames / SR:.0f} s: peak {np.abs(y).max():.3f}, rms first/last quarter second "
        f"{head:.4f}/{tail:.4f}; low E measured {measured:.2f} Hz (tuned {CHORD[0]} Hz); "
        f"{time.perf_counter() - start:.1f} s on {backend}"
    )
    return {
        "peak": float(np.abs(y).max()),
        "rms_head": float(head),
        "rms_tail": float(tail),
        "pitch": measured,
        "tuned": CHORD[0],
        "files": [out / "karplus_strong.wav"],
        "ok": abs(measured - CHORD[0]) < 0.01 * CHORD[0] and tail < head,
    }


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
