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


def _windows(x, window: int, past=None):
    """(N, [B], W): the W samples ending at each frame; `past` (or zeros) before frame 0."""
    if past is None:
        past = np.zeros((window - 1, *x.shape[1:]), x.dtype)
    return sliding_window_view(np.concatenate([past, x]), window, axis=0)


def _hop_weights(n: int, hop: int, dtype, phase: int = 0):
    """Frames where a window ends ((frame+1) % hop == 0) carry hop x its loss, others 0."""
    w = np.zeros(n, dtype)
    w[(hop - 1 - phase) % hop :: hop] = hop
    return w


def _magnitudes(x, window, past=None):
    return np.abs(np.fft.rfft(_windows(x, window, past), axis=-1))


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
        mem[base : base + w1] = np.concatenate([past_a, a])[-w1:]
        mem[base + w1 : base + 2 * w1] = np.concatenate([past_b, b])[-w1:]
        mem[base + 2 * w1] = (phase + len(a)) % self.hop
        return loss

    def ref(self, a, b, past_a=None, past_b=None, phase=0):
        fa, fb = _magnitudes(a, self.window, past_a), _magnitudes(b, self.window, past_b)
        loss = ((fa - fb) ** 2).sum(-1).astype(a.dtype)
        if self.hop > 1:
            loss *= _hop_weights(len(a), self.hop, a.dtype, phase).reshape(-1, *([1] * (a.ndim - 1)))
        return loss

    def vjp(self, g, y, a, b):
        from . import Op

        grad = g.graph
        return (grad.n(Op.spectral_loss_grad(self.window, self.hop), g, a, b),
                grad.n(Op.spectral_loss_grad(self.window, self.hop), g, b, a))


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
        spec_a = np.fft.rfft(_windows(a, W), axis=-1)
        mag_a = np.abs(spec_a)
        mag_b = np.abs(np.fft.rfft(_windows(b, W), axis=-1))
        # d|A_k|/dx_m = Re(conj(A_k) e^{-2 pi i k m/W}) / |A_k|; 0 where |A_k| = 0.
        with np.errstate(invalid="ignore", divide="ignore"):
            phase = np.where(mag_a > 0, spec_a / mag_a, 0)
        d = 2.0 * (mag_a - mag_b) * phase
        d[..., 1 : W // 2] *= 0.5  # irfft counts the inner bins twice
        per_window = W * np.fft.irfft(d, n=W, axis=-1)  # (N, [B], W): dL_n/dx_m
        weight = adj if self.hop == 1 else adj * _hop_weights(n, self.hop, adj.dtype).reshape(
            -1, *([1] * (adj.ndim - 1)))
        padded = np.zeros((n + W - 1, *a.shape[1:]), np.float64)
        for m in range(W):  # overlap-add: window n, tap m is sample n - W + 1 + m
            padded[m : m + n] += weight * per_window[..., m]
        return padded[W - 1 :].astype(a.dtype)

    def vjp(self, g, y, adj, a, b):
        raise errors.GraphError("second derivatives of spectral_loss are not supported")
