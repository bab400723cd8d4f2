"""The hop-1 spectral loss and its gradient for the C backend as running sums in C
(host_sdft.c), in place of the reference's FFT per window in NumPy.

Same values as `SpectralLoss.run` / `SpectralLossGrad.run` (ops/spectral.py) for hop 1:
the loss per frame, the window history kept in the op's cell rows, the exact gradient from a
zero history. O(W) work per frame for all bins where the FFTs cost O(W log W) per frame plus
NumPy's per-call overhead; sums in float64, restarted every CHUNK frames from directly
computed sums (so a huge or non-finite sample disturbs the rest of its chunk, and the next
chunk when it lies in the last W - 1 frames, not the whole signal). Windows up to MAX_WINDOW:
the twiddle table has W (W/2 + 1) entries (~0.5 MB at 256) and each restart costs O(W^2);
larger windows, other hops and the reference backend keep the FFT path. The library is built
once per machine through cc.compile_library (cached on disk), the twiddles once per W."""

from __future__ import annotations

import ctypes
import functools
import re
from pathlib import Path

import numpy as np

from ..ops.spectral import window_history
from . import cc

MAX_WINDOW = 256
SOURCE = (Path(__file__).with_name("host_sdft.c")).read_text()
CHUNK = int(re.search(r"#define CHUNK (\d+)", SOURCE).group(1))  # frames between restarts
_F32 = np.float32


def flags() -> tuple[str, ...]:
    """The kernels' flags with the compiler's loop vectoriser on (generated kernels turn it
    off: they spell their vectors out) and `#pragma omp simd` honoured for the reductions."""
    kept = [f for f in cc.default_flags(mvec=False) if f != "-fno-tree-loop-vectorize"]
    return (*kept, "-fopenmp-simd")


@functools.cache
def _library():
    lib = cc.compile_library(SOURCE, flags())
    pf, pd, n = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_double), ctypes.c_long
    lib.dgen_host_sdft_loss.argtypes = [pf, pf, pf, pf, pf, n, n, n, pd, pd, pd]
    lib.dgen_host_sdft_grad.argtypes = [pf, pf, pf, pf, n, n, n, pd, pd, pd]
    return lib


@functools.cache
def _twiddles(W: int) -> tuple[np.ndarray, np.ndarray]:
    """w^t = exp(-2 pi i t k / W) for t < W, k <= W / 2, as (W, W/2 + 1) float64 re and im."""
    phase = 2.0 * np.pi * (np.outer(np.arange(W), np.arange(W // 2 + 1)) % W) / W
    return np.ascontiguousarray(np.cos(phase)), np.ascontiguousarray(-np.sin(phase))


def _ptr(x, kind=ctypes.c_float):
    return x.ctypes.data_as(ctypes.POINTER(kind))


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=_F32)


def usable(op) -> bool:
    return op.hop == 1 and op.window <= MAX_WINDOW


def spectral_loss(op, mem, base, a, b):
    """SpectralLoss.run for hop 1: loss per frame, the window history updated in mem."""
    W, N = op.window, len(a)
    w1 = W - 1
    hist_a, hist_b = _f32(mem[base : base + w1]), _f32(mem[base + w1 : base + 2 * w1])
    a32, b32 = _f32(a), _f32(b)
    B = int(np.prod(a32.shape[1:], dtype=int))
    loss = np.empty(a32.shape, _F32)
    re, im = _twiddles(W)
    work = np.empty(2 * (N + w1) + 4 * (W // 2 + 1), np.float64)
    _library().dgen_host_sdft_loss(
        _ptr(hist_a), _ptr(a32), _ptr(hist_b), _ptr(b32), _ptr(loss), N, B, W, *_doubles(re, im, work)
    )
    mem[base : base + w1] = window_history(hist_a, a32)
    mem[base + w1 : base + 2 * w1] = window_history(hist_b, b32)
    mem[base + 2 * w1] = 0  # frames mod hop
    return loss.astype(a.dtype, copy=False)


def spectral_loss_grad(op, adj, a, b):
    """SpectralLossGrad.run for hop 1 (the forward pass started from a zero history)."""
    W, N = op.window, len(a)
    adj32, a32, b32 = _f32(adj), _f32(a), _f32(b)
    B = int(np.prod(a32.shape[1:], dtype=int))
    grad = np.empty(a32.shape, _F32)
    re, im = _twiddles(W)
    work = np.empty(2 * (N + W - 1) + 6 * (W // 2 + 1) + min(N, CHUNK) + W, np.float64)
    _library().dgen_host_sdft_grad(_ptr(adj32), _ptr(a32), _ptr(b32), _ptr(grad), N, B, W, *_doubles(re, im, work))
    return grad.astype(a.dtype, copy=False)


def _doubles(*arrays):
    return [_ptr(x, ctypes.c_double) for x in arrays]


def run_buffer_op(op, mem, base, *args):
    """op.run, through the C running sums where they apply."""
    if op.name == "spectral_loss" and usable(op):
        return spectral_loss(op, mem, base, *args)
    if op.name == "spectral_loss_grad" and usable(op):
        return spectral_loss_grad(op, *args)
    return op.run(mem, base, *args)
