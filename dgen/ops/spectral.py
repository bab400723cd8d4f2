"""Windowed spectral loss: a buffer op (it needs whole signals, so it splits the frame loop).

Computed with FFTs over all windows at once, O(N W log W), never a per-frame DFT.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import errors
from ..errors import describe
from .base import BUFFER, Primitive, register


def _check_window(node, window: int, hop: int):
    if not (isinstance(window, int) and window >= 4 and window & (window - 1) == 0):
        raise errors.WindowSizeError(f"{describe(node)}: window size {window!r} must be a power of two >= 4")
    if not (isinstance(hop, int) and hop >= 1):
        raise errors.WindowSizeError(f"{describe(node)}: hop {hop!r} must be an int >= 1")


def _padded(x, window: int, past=None):
    if past is None:
        past = np.zeros((window - 1, *x.shape[1:]), x.dtype)
    return np.concatenate([past, x])


def window_history(past, x, xp=np):
    """The last W - 1 samples of `past` (W - 1 rows) followed by `x`: what a window keeps for
    the next call. Only x's tail when x is long enough; `xp` is NumPy or CuPy."""
    w1, n = len(past), len(x)
    return x[n - w1 :] if n >= w1 else xp.concatenate([past[n:], x.astype(past.dtype, copy=False)])


def _ends(n: int, hop: int, phase: int = 0) -> np.ndarray:
    """Frames where a window ends: (phase + frame + 1) % hop == 0."""
    return np.arange((hop - 1 - phase) % hop, n, hop)


def _chunks(ends, per_frame: int, budget: int = 1 << 17):
    """Split window end frames so one chunk's FFT input stays under `budget` floats: the
    chunk's intermediates (about 0.5 MiB each) stay in cache and are reused by the allocator;
    with 4 M-float chunks (16 MiB arrays, 64 instances) the fresh pages of every temporary
    cost more than the FFTs."""
    step = max(1, budget // max(per_frame, 1))
    for k in range(0, len(ends), step):
        yield ends[k : k + step]


def _fft_module():
    """scipy.fft where installed: NumPy's pocketfft has no fast float32 path (a batch of 4096
    64-point float32 transforms takes about 8x longer than scipy's, and 5x longer than NumPy's
    own float64 one). Without scipy, float32 signals are transformed in float64."""
    try:
        import scipy.fft as fft

        return fft, False
    except ImportError:
        return np.fft, True


_FFT, _UPCAST = _fft_module()


def _rfft(x):
    return _FFT.rfft(x.astype(np.float64) if _UPCAST and x.dtype == np.float32 else x, axis=-1)


def _irfft(x, n):
    return _FFT.irfft(x, n=n, axis=-1)


def _window_spectra(padded, ends, window):
    """rfft of the W samples ending at each frame in `ends`: (len(ends), [B], W/2+1)."""
    view = sliding_window_view(padded, window, axis=0)  # a view: (N, [B], W)
    if len(ends) == view.shape[0]:  # hop 1: every window, no gather copy
        return _rfft(view)
    step = int(ends[1] - ends[0]) if len(ends) > 1 else 1
    if np.array_equal(ends, np.arange(ends[0], ends[-1] + 1, step)):  # evenly spaced: a strided view
        return _rfft(view[ends[0] : ends[-1] + 1 : step])
    return _rfft(view[ends])


def _overlap_add(out, per_window, ends, hop):
    """out[e + m] += per_window[i, ..., m] for the window ending at frame e = ends[i] (its tap m
    is padded sample e + m); the ends are consecutive, hop apart. When hop divides W, taps
    m = hop q + r of consecutive windows tile a contiguous run for each q: W / hop vector adds
    instead of W."""
    W, count = per_window.shape[-1], len(ends)
    assert count == 0 or ends[-1] - ends[0] == hop * (count - 1), "window ends must be hop apart"
    if W % hop:
        for m in range(W):
            out[ends + m] += per_window[..., m]
        return
    for q in range(W // hop):
        block = np.moveaxis(per_window[..., q * hop : (q + 1) * hop], -1, 1)  # (count, hop, [B])
        start = ends[0] + q * hop
        out[start : start + count * hop] += block.reshape(count * hop, *per_window.shape[1:-1])


@register
class SpectralLoss(Primitive):
    """y[n] = hop_weight(n) * sum_{k=0}^{W/2} (|A_k| - |B_k|)^2 over the W samples ending at n.

    A_k = sum_m a[n-W+1+m] exp(-2 pi i k m / W), rectangular window, samples before frame 0
    are 0. hop_weight is 1 for hop 1; for hop h it is h at frames n with (n+1) % h == 0 and 0
    elsewhere, so the mean over frames stays comparable across hops. Its cell keeps the last
    W-1 samples of a and b and the frame count mod hop, so streaming runs agree.
    """

    name, arity, kind, cell_role = "spectral_loss", 2, BUFFER, "owned"

    def __init__(self, cell, window: int, hop: int = 1):
        self.cell, self.window, self.hop = cell, window, hop

    @staticmethod
    def cell_size(window: int) -> int:
        return 2 * (window - 1) + 1

    def params(self):
        return (self.window, self.hop)

    def check(self, node):
        super().check(node)
        _check_window(node, self.window, self.hop)

    def run(self, mem, base, a, b):
        """One call over whole signals (N, [B]), carrying the window history in mem."""
        w1 = self.window - 1
        past_a, past_b = mem[base : base + w1], mem[base + w1 : base + 2 * w1]
        phase = int(np.ravel(mem[base + 2 * w1])[0])
        loss = self.ref(a, b, past_a, past_b, phase)
        mem[base : base + w1] = window_history(past_a, a)
        mem[base + w1 : base + 2 * w1] = window_history(past_b, b)
        mem[base + 2 * w1] = (phase + len(a)) % self.hop
        return loss

    def ref(self, a, b, past_a=None, past_b=None, phase=0):
        W = self.window
        pa, pb = _padded(a, W, past_a), _padded(b, W, past_b)
        loss = np.zeros(a.shape, np.float64)
        ends = _ends(len(a), self.hop, phase)
        for chunk in _chunks(ends, W * int(np.prod(a.shape[1:]))):
            fa = np.abs(_window_spectra(pa, chunk, W))
            fb = np.abs(_window_spectra(pb, chunk, W))
            loss[chunk] = ((fa - fb) ** 2).sum(-1) * self.hop
        return loss.astype(a.dtype)

    def vjp(self, g, y, a, b):
        from . import Op

        grad = g.graph
        return (
            grad.n(Op.spectral_loss_grad(self.window, self.hop), g, a, b),
            grad.n(Op.spectral_loss_grad(self.window, self.hop), g, b, a),
        )


@register
class SpectralLossGrad(Primitive):
    """y[m] = sum_n adj[n] * d spectral_loss(a, b)[n] / d a[m]  (exact, via inverse FFTs)"""

    name, arity, kind = "spectral_loss_grad", 3, BUFFER

    def __init__(self, window: int, hop: int = 1):
        self.window, self.hop = window, hop

    def params(self):
        return (self.window, self.hop)

    def run(self, mem, base, adj, a, b):
        return self.ref(adj, a, b)

    def ref(self, adj, a, b):
        """Assumes the forward pass started from reset (zero window history)."""
        W, n = self.window, len(a)
        pa, pb = _padded(a, W), _padded(b, W)
        padded_grad = np.zeros(pa.shape, np.float64)
        for chunk in _chunks(_ends(n, self.hop), W * int(np.prod(a.shape[1:]))):
            d = _window_spectra(pa, chunk, W)  # A, then in place the gradient's spectrum
            mag_a, scale = np.abs(d), np.abs(_window_spectra(pb, chunk, W))
            # d|A_k|/dx_m = Re(conj(A_k) e^{-2 pi i k m/W}) / |A_k|; 0 where |A_k| = 0.
            np.subtract(mag_a, scale, out=scale)
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(scale, mag_a, out=scale)
            scale[~(mag_a > 0)] = 0.0
            d *= scale
            d[..., 1 : W // 2] *= 0.5  # irfft counts the inner bins twice
            per_window = _irfft(d, W)  # (len(chunk), [B], W): dL_n/dx_m / (2W)
            per_window *= (adj[chunk] * (2 * W * self.hop))[..., None]
            _overlap_add(padded_grad, per_window, chunk, self.hop)
        return padded_grad[W - 1 :].astype(a.dtype)

    def vjp(self, g, y, adj, a, b):
        raise errors.GraphError("second derivatives of spectral_loss are not supported")
