"""Buffer ops on the GPU with CuPy: the windowed spectral loss and its gradient.

The same computation as `SpectralLoss.ref` / `SpectralLossGrad.ref` (ops/spectral.py) on
(frames, B) device arrays, with cuFFT in single precision as the NumPy reference does for
float32 programs (NumPy >= 2 transforms float32 input in complex64); the sums over bins and
over the taps of the overlap-add accumulate in float64.

Layout: signals are transposed once to (B, W-1+frames) so the windows of one instance are a
strided view (window i starts hop*i samples after window 0) and cuFFT runs over the last,
contiguous axis; no index arrays are built or uploaded. Magnitude differences are reduced in
one fused kernel and the gradient's overlap-add is one kernel (each output sample sums its
own taps: deterministic, no atomics). Windows are processed in chunks so the materialised
windows stay under GATHER_BUDGET floats. With hop 1 and windows up to cuda_sdft.MAX_WINDOW
the loss and its gradient are running sums instead (cuda_sdft.py: no FFT, no windows in
memory, no transposed copies: the kernels read and write the (frames, B) arrays in place).
Ops missing from GPU_BUFFER_OPS run on the host (CudaKernel copies their operands).
"""

from __future__ import annotations

from ..ops.spectral import window_history
from . import cuda_sdft

GATHER_BUDGET = 1 << 27  # float32 window samples per chunk (512 MB)

_OVERLAP_ADD = r"""
extern "C" __global__ void dgen_overlap_add(const float* per_window, const float* adj, double* grad,
        int B, int C, int W, int hop, int start, int n_adj, int n_grad, double scale) {
    /* grad[b, start + q] += scale * sum over windows i (starting at start + hop*i) and taps j
       with hop*i + j == q of adj[b, start + hop*i] * per_window[b, i, j] */
    int span = hop * (C - 1) + W;
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)B * span) return;
    int b = (int)(t / span), q = (int)(t % span);
    double acc = 0.0;
    for (int j = q % hop; j < W && j <= q; j += hop) {  /* taps j with (q - j) % hop == 0 */
        int i = (q - j) / hop;
        if (i < C) acc += (double)adj[(long long)b * n_adj + start + hop * i]
                          * per_window[((long long)b * C + i) * W + j];
    }
    grad[(long long)b * n_grad + start + q] += scale * acc;
}
"""
_KERNELS = {}


def _kernels(cp):
    """Fused kernels, built once per process (CuPy is imported lazily by the caller)."""
    if not _KERNELS:
        _KERNELS["sq_mag_diff"] = cp.ReductionKernel(
            "complex64 x, complex64 z",
            "float64 out",
            "sq((double)abs(x) - (double)abs(z))",
            "a + b",
            "out = a",
            "0",
            "dgen_sq_mag_diff",
            preamble="__device__ double sq(double v) { return v * v; }",
        )
        # d|A_k|^... : 2 (|A_k| - |B_k|) A_k / |A_k| (0 where |A_k| = 0); inner bins halved
        # because irfft counts them twice
        _KERNELS["unit_grad"] = cp.ElementwiseKernel(
            "complex64 A, float32 mb, int32 K, int32 half",
            "complex64 d",
            "float ma = abs(A); int k = i % K; float f = (k >= 1 && k < half) ? 1.0f : 2.0f;"
            "d = ma > 0 ? A * (f * (ma - mb) / ma) : complex<float>(0.0f, 0.0f);",
            "dgen_spectral_unit_grad",
        )
        _KERNELS["overlap_add"] = cp.RawKernel(_OVERLAP_ADD, "dgen_overlap_add")
    return _KERNELS


def _padded_t(cp, past, x):
    """(B, W-1+N) float32, C-contiguous: the window history then the signal, per instance."""
    return cp.ascontiguousarray(cp.concatenate([past, x]).T, dtype=cp.float32)


def _windows(cp, padded_t, start, count, hop, W):
    """Strided view (B, count, W): window i is padded_t[:, start + hop*i : ... + W]."""
    sb, sf = padded_t.strides
    return cp.lib.stride_tricks.as_strided(
        padded_t[:, start:], shape=(padded_t.shape[0], count, W), strides=(sb, hop * sf, sf)
    )


def _chunks(count: int, per_window: int):
    step = max(1, GATHER_BUDGET // max(per_window, 1))
    for i0 in range(0, count, step):
        yield i0, min(count, i0 + step)


def _first_end(n: int, hop: int, phase: int = 0) -> tuple[int, int]:
    """(first frame where a window ends, number of such frames): (phase + frame + 1) % hop == 0."""
    first = (hop - 1 - phase) % hop
    return first, max(0, -(-(n - first) // hop))


def spectral_loss(cp, op, sub, a, b):
    """SpectralLoss.run on the GPU; `sub` is the op's cell rows (updated in place)."""
    W, hop = op.window, op.hop
    w1, N = W - 1, a.shape[0]
    if cuda_sdft.usable(W, hop):  # a window at every frame: running sums on (frames, B) in place
        loss = cuda_sdft.loss(cp, W, sub[:w1], a, sub[w1 : 2 * w1], b)
        carry_history(cp, sub, W, a, b)
        return loss
    phase = 0 if hop == 1 else int(sub[2 * w1, 0].get())  # frame count mod hop
    pa, pb = _padded_t(cp, sub[:w1], a), _padded_t(cp, sub[w1 : 2 * w1], b)
    loss_t = _fft_loss(cp, pa, pb, N, W, hop, phase)
    sub[:w1] = pa[:, -w1:].T.astype(cp.float32)
    sub[w1 : 2 * w1] = pb[:, -w1:].T.astype(cp.float32)
    if hop > 1:
        sub[2 * w1] = (phase + N) % hop
    return cp.ascontiguousarray(loss_t.T, dtype=cp.float32)


def carry_history(cp, sub, W, a, b):
    """The hop-1 loss's cell rows after a call over a, b: the last W - 1 samples of each."""
    w1 = W - 1
    sub[:w1] = window_history(sub[:w1], a, cp)
    sub[w1 : 2 * w1] = window_history(sub[w1 : 2 * w1], b, cp)


def _fft_loss(cp, pa, pb, N, W, hop, phase):
    """(B, N) float64 loss per frame from windows transformed by cuFFT, chunk by chunk."""
    B = pa.shape[0]
    first, count = _first_end(N, hop, phase)
    loss_t = cp.zeros((B, N), cp.float64)
    sq_mag_diff = _kernels(cp)["sq_mag_diff"]
    for i0, i1 in _chunks(count, W * B):
        start = first + hop * i0  # window ending at frame n starts at padded index n
        fa = cp.fft.rfft(_windows(cp, pa, start, i1 - i0, hop, W), axis=-1)
        fb = cp.fft.rfft(_windows(cp, pb, start, i1 - i0, hop, W), axis=-1)
        loss_t[:, start : start + hop * (i1 - i0) : hop] = sq_mag_diff(fa, fb, axis=-1) * hop
    return loss_t


def spectral_loss_grad(cp, op, sub, adj, a, b):
    """SpectralLossGrad.run on the GPU (the forward pass started from a zero window history)."""
    W, hop = op.window, op.hop
    N, B = a.shape
    if cuda_sdft.usable(W, hop):
        return cuda_sdft.grad(cp, W, a, b, adj)
    zeros = cp.zeros((W - 1, B), a.dtype)
    pa, pb = _padded_t(cp, zeros, a), _padded_t(cp, zeros, b)
    adj_t = cp.ascontiguousarray(adj.T, dtype=cp.float32)
    grad_t = cp.zeros(pa.shape, cp.float64)
    k = _kernels(cp)
    first, count = _first_end(N, hop)
    for i0, i1 in _chunks(count, W * B):
        start, C = first + hop * i0, i1 - i0
        spec_a = cp.fft.rfft(_windows(cp, pa, start, C, hop, W), axis=-1)
        mag_b = cp.abs(cp.fft.rfft(_windows(cp, pb, start, C, hop, W), axis=-1))
        d = k["unit_grad"](spec_a, mag_b, cp.int32(W // 2 + 1), cp.int32(W // 2))
        per_window = cp.ascontiguousarray(cp.fft.irfft(d, n=W, axis=-1))  # (B, C, W): dL_n/dx_m / W
        span = hop * (C - 1) + W
        threads = 256
        k["overlap_add"](
            (-(-B * span // threads),),
            (threads,),
            (
                per_window,
                adj_t,
                grad_t,
                cp.int32(B),
                cp.int32(C),
                cp.int32(W),
                cp.int32(hop),
                cp.int32(start),
                cp.int32(N),
                cp.int32(pa.shape[1]),
                cp.float64(W * hop),
            ),
        )
    return cp.ascontiguousarray(grad_t[:, W - 1 :].T, dtype=cp.float32)


GPU_BUFFER_OPS = {"spectral_loss": spectral_loss, "spectral_loss_grad": spectral_loss_grad}
