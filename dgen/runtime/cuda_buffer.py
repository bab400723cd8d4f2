"""Buffer ops on the GPU with CuPy: the windowed spectral loss and its gradient.

The same computation as `SpectralLoss.ref` / `SpectralLossGrad.ref` (ops/spectral.py), in
float64 like the NumPy reference (cuFFT instead of pocketfft), on (frames, B) device arrays.
Window end frames are processed in chunks so the gathered windows stay under GATHER_BUDGET
floats. Ops missing from GPU_BUFFER_OPS run on the host (CudaKernel copies their operands).
"""

from __future__ import annotations

import numpy as np

GATHER_BUDGET = 1 << 26  # float64 values of gathered windows per chunk (512 MB)


def _ends(n: int, hop: int, phase: int = 0) -> np.ndarray:
    """Frames where a window ends: (phase + frame + 1) % hop == 0 (as ops/spectral.py)."""
    return np.arange((hop - 1 - phase) % hop, n, hop)


def _chunks(ends, per_frame: int):
    step = max(1, GATHER_BUDGET // max(per_frame, 1))
    for k in range(0, len(ends), step):
        yield ends[k : k + step]


def _spectra(cp, padded, chunk, W):
    """rfft over the W samples ending at each frame of `chunk`: (len(chunk), W/2+1, B)."""
    idx = cp.asarray(chunk[:, None] + np.arange(W)[None, :])  # rows of `padded` (frame n -> n..n+W-1)
    return cp.fft.rfft(padded[idx], axis=1)


def spectral_loss(cp, op, sub, a, b):
    """SpectralLoss.run on the GPU; `sub` is the op's cell rows (updated in place)."""
    W, hop = op.window, op.hop
    w1, (N, B) = W - 1, a.shape
    phase = int(sub[2 * w1, 0].get())
    pa = cp.concatenate([sub[:w1], a]).astype(cp.float64)
    pb = cp.concatenate([sub[w1 : 2 * w1], b]).astype(cp.float64)
    loss = cp.zeros((N, B), cp.float64)
    for chunk in _chunks(_ends(N, hop, phase), W * B):
        fa, fb = cp.abs(_spectra(cp, pa, chunk, W)), cp.abs(_spectra(cp, pb, chunk, W))
        loss[cp.asarray(chunk)] = ((fa - fb) ** 2).sum(axis=1) * hop
    sub[:w1] = pa[-w1:].astype(cp.float32)
    sub[w1 : 2 * w1] = pb[-w1:].astype(cp.float32)
    sub[2 * w1] = (phase + N) % hop
    return loss.astype(cp.float32)


def spectral_loss_grad(cp, op, sub, adj, a, b):
    """SpectralLossGrad.run on the GPU (the forward pass started from a zero window history)."""
    import cupyx

    W, hop = op.window, op.hop
    N, B = a.shape
    zeros = cp.zeros((W - 1, B), cp.float64)
    pa, pb = cp.concatenate([zeros, a.astype(cp.float64)]), cp.concatenate([zeros, b.astype(cp.float64)])
    grad = cp.zeros(pa.shape, cp.float64)
    for chunk in _chunks(_ends(N, hop), W * B):
        spec_a = _spectra(cp, pa, chunk, W)
        mag_a, mag_b = cp.abs(spec_a), cp.abs(_spectra(cp, pb, chunk, W))
        unit = cp.where(mag_a > 0, spec_a / cp.where(mag_a > 0, mag_a, 1.0), 0)  # d|A_k|/dA_k; 0 at |A_k| = 0
        d = 2.0 * (mag_a - mag_b) * unit
        d[:, 1 : W // 2] *= 0.5  # irfft counts the inner bins twice
        per_window = W * cp.fft.irfft(d, n=W, axis=1)  # (chunk, W, B): dL_n / dx_m
        weight = adj[cp.asarray(chunk)].astype(cp.float64) * hop  # (chunk, B)
        idx = cp.asarray(chunk[:, None] + np.arange(W)[None, :])
        cupyx.scatter_add(grad, idx, weight[:, None, :] * per_window)
    return grad[W - 1 :].astype(cp.float32)


GPU_BUFFER_OPS = {"spectral_loss": spectral_loss, "spectral_loss_grad": spectral_loss_grad}
