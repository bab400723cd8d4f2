"""Building blocks from ops.md as plain functions over primitives (no gradient rules:
they differentiate through their parts)."""

from __future__ import annotations

import math

from ..errors import GraphError
from ..graph import MAX_CELL
from ..ops import Op
from ..ops.spectral import SpectralLoss


def _n(g, op, *xs):
    return g.n(op, *xs)


def clamp(g, x, lo, hi):
    """y = min(max(x, lo), hi)"""
    return g.n(Op.min, g.n(Op.max, x, lo), hi)


EXACT_PHASE = 2**24  # k / P is exact in float32 for every k < P when P <= 2^24


def _write_position(g, size):
    """(counter 0, 1, ..., P-1, 0, ... and its period P >= size) for a delay line.

    A phasor stepping 1/P with P a power of two counts exactly (k/P and the wrap are exact in
    float32) and its loop-carried chain is an add, a floor and a subtract; `accum` with
    min/max wraps with a division, several times slower per frame. Past 2^24 the phase is no
    longer exact: the accum it is."""
    period = 1 << (size - 1).bit_length()
    if period > EXACT_PHASE:
        return g.n(Op.accum(g.alloc()), 1.0, 0.0, 0.0, float(size)), size
    # float32(sr / P) / float32(sr) == 1 / P exactly: P is a power of two
    phase = g.n(Op.phasor(g.alloc()), g.sample_rate / period, 0.0)
    return phase * float(period), period


def _wrap_once(g, i, size):
    """i in [0, 2*size) -> i mod size, without a division."""
    return g.n(Op.gswitch, g.n(Op.gte, i, float(size)), i - float(size), i)


def delay(g, x, d, max_delay=None):
    """y[n] = x(n - d), linear interpolation, d clamped to [0, max_delay] (default 2*sr).

    The write position is an integer counter and d is split into whole and fractional parts
    before it meets the counter, so float32 keeps full interpolation precision. Read positions
    are `pos + (size - whole)` wrapped by one compare-and-subtract: never negative, so the
    memory index needs no division either. The buffer holds at least max_delay + 2 samples
    (a power of two of them up to 2^24, see _write_position).
    """
    max_delay = 2.0 * g.sample_rate if max_delay is None else float(max_delay)
    if not (math.isfinite(max_delay) and 0 <= max_delay <= MAX_CELL - 2):
        raise GraphError(f"delay: max_delay must be finite and in [0, {MAX_CELL - 2}] samples, got {max_delay}")
    write_pos, size = _write_position(g, int(math.ceil(max_delay)) + 2)
    buf = g.alloc(size)
    written = g.n(Op.memory_write(buf), write_pos, x)
    dd = clamp(g, d, 0.0, max_delay)
    whole = g.n(Op.floor, dd)
    frac = dd - whole
    back = float(size) - whole  # in [2, size]: whole <= max_delay <= size - 2
    newer = g.seq(written, g.n(Op.memory_read(buf), _wrap_once(g, write_pos + back, size)))
    older = g.seq(written, g.n(Op.memory_read(buf), _wrap_once(g, write_pos + (back - 1.0), size)))
    return newer * (1.0 - frac) + older * frac


def sos(g, x, b0, b1, b2, a1, a2):
    """y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2] (direct form I)."""
    x1, write_x1 = g.history()
    x2, write_x2 = g.history()
    y1, write_y1 = g.history()
    y2, write_y2 = g.history()
    y = b0 * _as_node(g, x) + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
    write_x1(x)
    write_x2(x1)
    write_y1(y)
    write_y2(y1)
    return y


def _as_node(g, x):
    return g.constant(x) if not hasattr(x, "graph") else x


def rbj_coefficients(g, cutoff, resonance, gain, mode):
    """(b0, b1, b2, a1, a2) from the RBJ cookbook, mode 0..5 as in ops.md."""
    w = g.n(Op.abs, cutoff) * (2.0 * math.pi / g.sample_rate)
    sin_w, c = g.n(Op.sin, w), g.n(Op.cos, w)
    alpha = sin_w / (2.0 * g.n(Op.abs, resonance))
    one = g.constant(1.0)
    table = [  # mode: (b0, b1, b2)
        ((1.0 - c) * 0.5, 1.0 - c, (1.0 - c) * 0.5),
        ((1.0 + c) * 0.5, -(1.0 + c), (1.0 + c) * 0.5),
        (alpha, g.constant(0.0), -alpha),
        (sin_w * 0.5, g.constant(0.0), -(sin_w * 0.5)),
        (one, c * -2.0, one),
        (1.0 - alpha, c * -2.0, 1.0 + alpha),
    ]
    index = _as_node(g, mode) + 1.0
    scale = _as_node(g, gain) / (1.0 + alpha)
    bs = [g.n(Op.selector, index, *(row[i] for row in table)) * scale for i in range(3)]
    a0 = 1.0 + alpha
    return (*bs, (c * -2.0) / a0, (1.0 - alpha) / a0)


def biquad(g, x, cutoff, resonance, gain, mode):
    """`sos` with RBJ cookbook coefficients (lowpass, highpass, 2 bandpass, notch, allpass)."""
    return sos(g, x, *rbj_coefficients(g, cutoff, resonance, gain, mode))


def _db(g, v):
    return 20.0 * g.n(Op.log10, g.n(Op.max, g.n(Op.abs, v), 1e-5))


def compressor(g, x, ratio, threshold, knee, attack, release, sidechain_on=0.0, sidechain=0.0):
    """Soft-knee feed-forward compressor, levels in dB and times in seconds (ops.md)."""
    det = _db(g, g.n(Op.gswitch, sidechain_on, sidechain, x))
    ks = threshold - _as_node(g, knee) * 0.5
    ke = threshold + _as_node(g, knee) * 0.5
    # knee = 0 makes p infinite in the unused branch; a tiny floor keeps gradients finite
    p = (det - ks) / g.n(Op.max, knee, 1e-9)
    r = 1.0 + p * (_as_node(g, ratio) - 1.0)
    hard = (det - threshold) * (1.0 - 1.0 / _as_node(g, ratio))
    soft = (det - (ks + p * (threshold - ks))) * (1.0 - 1.0 / r)
    gr = g.n(Op.gswitch, g.n(Op.lte, det, ks), 0.0, g.n(Op.gswitch, g.n(Op.gte, det, ke), hard, soft))
    log001 = math.log(0.01)
    ca = g.n(Op.exp, log001 / (_as_node(g, attack) * g.sample_rate))
    cr = g.n(Op.exp, log001 / (_as_node(g, release) * g.sample_rate))
    prev, write = g.history()
    coeff = g.n(Op.gswitch, g.n(Op.gt, gr, prev), ca, cr)
    smooth = write(coeff * prev + (1.0 - coeff) * gr)
    gain_db = _db(g, x) - smooth
    return g.n(Op.sign, x) * g.n(Op.pow, 10.0, gain_db / 20.0)


def spectral_loss(g, a, b, window_size=64, hop=1):
    """Per-frame squared difference of FFT magnitudes over the last `window_size` samples."""
    ok = isinstance(window_size, int) and window_size >= 4
    cell = g.alloc(SpectralLoss.cell_size(window_size) if ok else 1)
    return g.n(Op.spectral_loss(cell, window_size, hop), a, b)


def multi_spectral_loss(g, a, b, windows=(64, 128, 256), hop=None):
    """Sum of spectral losses over several window sizes (multi-resolution, DDSP style).

    `hop` defaults to a quarter of each window (75% overlap), as in DDSP and auraloss.
    """
    total = None
    for w in windows:
        term = spectral_loss(g, a, b, w, hop or max(1, w // 4))
        total = term if total is None else total + term
    return total
