"""The spectral loss with hop 1 (a window ending at every frame) as running sums on the GPU.

With window W and padded signal x (W-1 samples of history, then the call's frames), the
window ending at frame n covers padded samples n..n+W-1 and, up to a phase factor that does
not change magnitudes, its rfft bin k is

    S_k[n] = sum_{j<W} x[n+j] w^(k(n+j)),   w = exp(-2 pi i / W),   |A_k[n]| = |S_k[n]|.

Because w^(k(n+W)) = w^(kn), the next window is one update, S_k[n+1] = S_k[n] +
(x[n+W] - x[n]) w^(kn): O(W) work per frame for all bins, where an FFT per window costs
O(W log W), and no window is ever materialised. The sums run in float64 (the update only adds,
so rounding grows with the chunk length, not multiplicatively); magnitudes and the gradient's
quotient are taken in float32, the program's precision. The gradient is exact too:

    dL/dx[p] = sum_k Re(w^(kp) R_k(p)),  R_k(p) = sum_{n=p-W+1..p} G_k[n],
    G_k[n] = adj[n] * 2 (|S^a_k[n]| - |S^b_k[n]|) conj(S^a_k[n]) / |S^a_k[n]|   (0 where |S^a| = 0)

with R a sliding sum kept by a leading and a trailing copy of S. One warp per (instance,
chunk of frames), bins spread over its lanes (DC and Nyquist, both real, share one lane, so
W/2 slots cover the W/2 + 1 bins), a warp reduction per frame; each chunk starts from sums
computed directly. Used for windows up to MAX_WINDOW (register pressure grows
with the bins per lane); cuda_buffer.py uses cuFFT otherwise and for hop > 1.
"""

from __future__ import annotations

MAX_WINDOW = 128
MAX_CHUNK = 256  # frames per warp, fewer when B is small (more warps; each chunk restarts its sums)
WARPS = 2048  # warps a call aims for

_SOURCE = r"""
/* Slot s of a lane holds bin k = s (1 <= s < W/2) as a complex sum, or, for s = 0, the two
   real bins: DC in .r and Nyquist in .i (so W/2 slots cover the W/2 + 1 bins evenly). */
#define SLOTS (W / 2)
#define SPL ((SLOTS + 31) / 32)
struct cplx { double r, i; };

__device__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
__device__ void twiddles(double *tr, double *ti) {  /* w^j = exp(-2 pi i j / W) */
    for (int j = threadIdx.x; j < W; j += 32) { double s, c; sincospi(2.0 * j / W, &s, &c); tr[j] = c; ti[j] = -s; }
    __syncwarp();
}
__device__ double at(const float *x, int p, int L) { return (p >= 0 && p < L) ? (double)x[p] : 0.0; }
/* one sample's term of slot s at padded index p */
__device__ void add(cplx &z, double v, int s, int p, const double *tr, const double *ti) {
    if (s == 0) { z.r += v; z.i += (p & 1) ? -v : v; }
    else { int t = (s * p) & (W - 1); z.r += v * tr[t]; z.i += v * ti[t]; }
}
/* slot s of the window starting at padded sample n (samples outside [0, L) are 0) */
__device__ cplx direct(const float *x, int n, int L, int s, const double *tr, const double *ti) {
    cplx z = {0.0, 0.0};
    for (int j = 0; j < W; j++) add(z, at(x, n + j, L), s, n + j, tr, ti);
    return z;
}
/* window n -> n + 1: x[n] leaves, x[n + W] enters with the same twiddle (period W) */
__device__ void advance(cplx &z, const float *x, int n, int L, int s, const double *tr, const double *ti) {
    add(z, at(x, n + W, L) - at(x, n, L), s, n, tr, ti);
}
/* magnitudes and the gradient's quotient in single precision (fast sqrt and division; the
   program computes in float32 and the sums they come from stay in float64) */
__device__ double mag(double r, double i) { return (double)sqrtf((float)(r * r + i * i)); }
__device__ double term(cplx a, cplx b, int s) {  /* sum over the slot's bins of (|A| - |B|)^2 */
    if (s == 0) { double d0 = fabs(a.r) - fabs(b.r), dn = fabs(a.i) - fabs(b.i); return d0 * d0 + dn * dn; }
    double d = mag(a.r, a.i) - mag(b.r, b.i);
    return d * d;
}

extern "C" __global__ void dgen_sdft_loss(const float *pa, const float *pb, double *loss, int B, int N, int chunk) {
    __shared__ double tr[W], ti[W];
    const int b = blockIdx.x % B, n0 = (blockIdx.x / B) * chunk, n1 = min(N, n0 + chunk), L = N + W - 1;
    twiddles(tr, ti);
    const float *xa = pa + (long long)b * L, *xb = pb + (long long)b * L;
    cplx sa[SPL], sb[SPL];
    _Pragma("unroll") for (int q = 0; q < SPL; q++) {
        int s = threadIdx.x + 32 * q;
        if (s < SLOTS) { sa[q] = direct(xa, n0, L, s, tr, ti); sb[q] = direct(xb, n0, L, s, tr, ti); }
    }
    for (int n = n0; n < n1; n++) {
        double part = 0.0;
        _Pragma("unroll") for (int q = 0; q < SPL; q++) {
            int s = threadIdx.x + 32 * q;
            if (s < SLOTS) {
                part += term(sa[q], sb[q], s);
                advance(sa[q], xa, n, L, s, tr, ti);
                advance(sb[q], xb, n, L, s, tr, ti);
            }
        }
        part = warp_sum(part);
        if (threadIdx.x == 0) loss[(long long)b * N + n] = part;
    }
}

/* G[n] = adj[n] * d loss_n / d S (as a conjugate): 2 (|A| - |B|) conj(A) / |A|, 0 where |A| = 0 */
__device__ cplx weight(cplx a, cplx b, int s, const float *adj, int n, int N) {
    cplx g = {0.0, 0.0};
    if (n < 0 || n >= N) return g;
    double w = 2.0 * (double)adj[n];
    if (s == 0) {  /* real bins: d|x|/dx = sign(x) */
        g.r = w * (fabs(a.r) - fabs(b.r)) * ((a.r > 0) - (a.r < 0));
        g.i = w * (fabs(a.i) - fabs(b.i)) * ((a.i > 0) - (a.i < 0));
        return g;
    }
    double ma = mag(a.r, a.i);
    if (ma > 0.0) {
        double f = w * (double)((float)(ma - mag(b.r, b.i)) / (float)ma);
        g.r = f * a.r; g.i = -f * a.i;
    }
    return g;
}
/* Re(w^(s p) R) for a complex slot; R_DC + (-1)^p R_Nyquist for slot 0 */
__device__ double project(cplx R, int s, int p, const double *tr, const double *ti) {
    if (s == 0) return R.r + ((p & 1) ? -R.i : R.i);
    int t = (s * p) & (W - 1);
    return tr[t] * R.r - ti[t] * R.i;
}

extern "C" __global__ void dgen_sdft_grad(const float *pa, const float *pb, const float *adj_t, double *grad,
                                          int B, int N, int chunk) {
    __shared__ double tr[W], ti[W];
    const int b = blockIdx.x % B, m0 = (blockIdx.x / B) * chunk, m1 = min(N, m0 + chunk), L = N + W - 1;
    twiddles(tr, ti);
    const float *xa = pa + (long long)b * L, *xb = pb + (long long)b * L, *adj = adj_t + (long long)b * N;
    const int p0 = m0 + W - 1;  /* padded index of sample m0 */
    cplx ta[SPL], tb[SPL], la[SPL], lb[SPL], R[SPL];
    _Pragma("unroll") for (int q = 0; q < SPL; q++) {
        int s = threadIdx.x + 32 * q;
        if (s >= SLOTS) continue;
        ta[q] = direct(xa, m0, L, s, tr, ti); tb[q] = direct(xb, m0, L, s, tr, ti);  /* trailing: n = p0-W+1 */
        la[q] = ta[q]; lb[q] = tb[q];
        R[q].r = 0.0; R[q].i = 0.0;
        for (int n = m0; n <= p0; n++) {  /* R(p0): the W windows holding sample p0 */
            cplx g = weight(la[q], lb[q], s, adj, n, N);
            R[q].r += g.r; R[q].i += g.i;
            advance(la[q], xa, n, L, s, tr, ti); advance(lb[q], xb, n, L, s, tr, ti);
        }  /* leading: n = p0 + 1 */
    }
    for (int p = p0; p < p0 + (m1 - m0); p++) {
        double part = 0.0;
        _Pragma("unroll") for (int q = 0; q < SPL; q++) {
            int s = threadIdx.x + 32 * q;
            if (s >= SLOTS) continue;
            part += project(R[q], s, p, tr, ti);
            /* R(p + 1) = R(p) + G[p + 1] - G[p - W + 1] */
            cplx gl = weight(la[q], lb[q], s, adj, p + 1, N), gt = weight(ta[q], tb[q], s, adj, p - W + 1, N);
            R[q].r += gl.r - gt.r; R[q].i += gl.i - gt.i;
            advance(la[q], xa, p + 1, L, s, tr, ti); advance(lb[q], xb, p + 1, L, s, tr, ti);
            advance(ta[q], xa, p - W + 1, L, s, tr, ti); advance(tb[q], xb, p - W + 1, L, s, tr, ti);
        }
        part = warp_sum(part);
        if (threadIdx.x == 0) grad[(long long)b * N + (p - W + 1)] = part;
    }
}
"""
_MODULES = {}


def _module(cp, W: int):
    if W not in _MODULES:
        _MODULES[W] = cp.RawModule(code=f"#define W {W}\n" + _SOURCE)
    return _MODULES[W]


def _chunk(W: int, N: int, B: int) -> int:
    """Frames per warp: about WARPS warps in all, never under W (a chunk restarts with O(W))."""
    return max(W, min(MAX_CHUNK, -(-N * B // WARPS)))


def usable(window: int, hop: int) -> bool:
    return hop == 1 and window <= MAX_WINDOW


def loss(cp, W, pa, pb):
    """(B, N) float64 spectral loss per frame; pa, pb (B, W-1+N) float32 padded signals."""
    B, N = pa.shape[0], pa.shape[1] - (W - 1)
    out = cp.empty((B, N), cp.float64)
    chunk = _chunk(W, N, B)
    _module(cp, W).get_function("dgen_sdft_loss")(
        (-(-N // chunk) * B,), (32,), (pa, pb, out, cp.int32(B), cp.int32(N), cp.int32(chunk))
    )
    return out


def grad(cp, W, pa, pb, adj_t):
    """(B, N) float64 gradient by a's samples of sum_n adj[n] loss[n] (zero window history)."""
    B, N = adj_t.shape
    out = cp.empty((B, N), cp.float64)
    chunk = _chunk(W, N, B)
    _module(cp, W).get_function("dgen_sdft_grad")(
        (-(-N // chunk) * B,), (32,), (pa, pb, adj_t, out, cp.int32(B), cp.int32(N), cp.int32(chunk))
    )
    return out
