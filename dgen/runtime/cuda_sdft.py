"""The spectral loss with hop 1 (a window ending at every frame) as running sums on the GPU.

With window W and padded signal x (W-1 samples of history, then the call's frames), the
window ending at frame n covers padded samples n..n+W-1 and, up to a phase factor that does
not change magnitudes, its rfft bin k is

    S_k[n] = sum_{j<W} x[n+j] w^(k(n+j)),   w = exp(-2 pi i / W),   |A_k[n]| = |S_k[n]|.

Because w^(k(n+W)) = w^(kn), the next window is one update, S_k[n+1] = S_k[n] +
(x[n+W] - x[n]) w^(kn): O(W) work per frame for all bins, where an FFT per window costs
O(W log W), and no window is ever materialised. Everything runs in float32, the program's
precision, with twiddles rounded once from float64: the update only adds, so rounding grows
with the chunk length (<= MAX_CHUNK + 2W updates), not multiplicatively; measured against the
float64 reference, the loss and gradient errors are ~1e-6 of their largest values (the float32
FFT's are ~1e-7; the same kernels with float64 sums took 1.8x (loss) and 1.5x (gradient) the
time on an H200, benchmarks/sdft_kernels.py). Per-frame sums over the
bins are added up in float64. The gradient is exact too:

    dL/dx[p] = sum_k Re(w^(kp) R_k(p)),  R_k(p) = sum_{n=p-W+1..p} G_k[n],
    G_k[n] = adj[n] * 2 (|S^a_k[n]| - |S^b_k[n]|) conj(S^a_k[n]) / |S^a_k[n]|   (0 where |S^a| = 0)

and, since w^(kp) = w^(k(p-W)), dL/dx[p] = Q(p) - Q(p-W) with Q(n) = sum_k Re(w^(kn) P_k(n))
and P the running sum of G: one pass over the windows with one copy of the sums. One warp
per (instance, chunk of frames), bins spread over its lanes (DC and Nyquist, both real, share
one lane, so W/2 slots cover the W/2 + 1 bins); twiddles come from a table in shared memory,
the next 32 frames' inputs are staged there by the warp's lanes and read as broadcasts, and
per-frame sums over the lanes go through a 32-frame shared memory transpose instead of a
shuffle tree per frame. Each chunk starts from sums computed directly (W steps; the gradient
also runs the W - 1 windows past the chunk's last frame: they hold its last samples), so a
huge or non-finite sample disturbs the rest of its chunk, and the next one when it lies in
the last W - 1 frames, not the whole signal. Used for windows up to MAX_WINDOW (register
pressure grows with the bins per lane); cuda_buffer.py uses cuFFT otherwise and for hop > 1.
"""

from __future__ import annotations

MAX_WINDOW = 128
MAX_CHUNK = 512  # frames per warp, fewer when B is small (more warps; each chunk restarts its sums)
WARPS = 2048  # warps a call aims for
WARPS_PER_BLOCK = 2  # WPB in the source: warps of a block, each on its own job

_SOURCE = r"""
/* Slot s of a lane holds bin k = s (1 <= s < W/2) as a complex sum, or, for s = 0, the two
   real bins: DC in .x and Nyquist in .y (so W/2 slots cover the W/2 + 1 bins evenly). */
#define SLOTS (W / 2)
#define SPL ((SLOTS + 31) / 32)
static_assert(W <= MAX_CHUNK, "the gradient's Q rows hold MAX_CHUNK + W values");

/* w^t = exp(-2 pi i t / W) for t < W, rounded once from float64; the block's warps share it */
__device__ void fill_twiddles(float2 *tab) {
    for (int t = threadIdx.x; t < W; t += blockDim.x) {
        double s, c;
        sincospi(2.0 * t / W, &s, &c);
        tab[t] = make_float2((float)c, (float)-s);
    }
    __syncthreads();
}
/* the twiddle of slot s at padded index n, where t = s n mod W; slot 0: (1, (-1)^n) */
__device__ float2 twiddle(const float2 *tab, int s, int t, float nyquist) {
    return s ? tab[t] : make_float2(1.0f, nyquist);
}
__device__ void add(float2 &z, float v, float2 w) { z.x = fmaf(v, w.x, z.x); z.y = fmaf(v, w.y, z.y); }
/* One instance's signal, read in place from the program's (frames, B) layout: padded index p
   is history row p for p < W - 1 (hist = nullptr: zeros), then frame p - (W - 1); 0 past the
   end. Lanes read different frames of one instance (strided), but the warps of neighbouring
   instances read the rest of each 32-byte sector at about the same time, so no transposed
   copy is made. */
struct signal { const float *hist, *x; };
__device__ float at(signal s, int p, int b, int B, int N) {
    if (p < W - 1) return s.hist ? s.hist[(long long)p * B + b] : 0.0f;
    p -= W - 1;
    return p < N ? s.x[(long long)p * B + b] : 0.0f;
}

/* A warp's samples of both signals, (a, b) at padded index p in ring[p % RING]: each sample
   is read from global memory once, W frames before it leaves the window. */
#define RING (W + 32 <= 64 ? 64 : W + 32 <= 128 ? 128 : 256)
struct warp_io { float2 *ring; float4 *ahead; signal xa, xb; const float *adj; int b, B, N, lane; };
__device__ float2 sample(const warp_io &io, int p) {
    return make_float2(at(io.xa, p, io.b, io.B, io.N), at(io.xb, p, io.b, io.B, io.N));
}

/* the W samples of the window starting at padded index n, parked by the whole warp */
__device__ void park_window(const warp_io &io, int n) {
    for (int p = n + io.lane; p < n + W; p += 32) io.ring[p & (RING - 1)] = sample(io, p);
    __syncwarp();
}
/* slot sums of the window starting at padded sample n (parked) */
__device__ void direct(float2 &za, float2 &zb, const warp_io &io, int n, int s, const float2 *tab) {
    za = zb = make_float2(0.0f, 0.0f);
    for (int j = 0; j < W; j++) {
        const float2 w = twiddle(tab, s, (s * (n + j)) & (W - 1), ((n + j) & 1) ? -1.0f : 1.0f);
        const float2 x = io.ring[(n + j) & (RING - 1)];
        add(za, x.x, w);
        add(zb, x.y, w);
    }
}
/* The next 32 windows' inputs, one per lane, parked in shared memory and read back as a
   broadcast: window n -> n + 1 takes x[n + W] - x[n] (same twiddle, period W), and the
   gradient also reads adj[n] (0 past the last frame). */
__device__ void stage(const warp_io &io, int n) {
    __syncwarp();
    const int p = n + W + io.lane, m = n + io.lane;
    const float2 hi = sample(io, p);
    io.ring[p & (RING - 1)] = hi;  /* RING >= W + 32: never a slot this group still reads */
    __syncwarp();
    const float2 lo = io.ring[m & (RING - 1)];
    const float adj = io.adj && m < io.N ? io.adj[(long long)m * io.B + io.b] : 0.0f;
    io.ahead[io.lane] = make_float4(hi.x - lo.x, hi.y - lo.y, adj, 0.0f);
    __syncwarp();
}
__device__ void advance(float2 &za, float2 &zb, float4 in, float2 w) { add(za, in.x, w); add(zb, in.y, w); }
/* magnitudes by the hardware's approximate square root (MUFU.SQRT, ~1 ulp); IEEE sqrtf costs
   several instructions more in the hot loop. Slot 0's real bins and a complex slot's bin are
   both computed and one is selected: no divergent branch on lane 0. */
__device__ float fast_sqrt(float x) { float y; asm("sqrt.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y; }
__device__ float term(float2 a, float2 b, int s) {  /* sum over the slot's bins of (|A| - |B|)^2 */
    const float d0 = fabsf(a.x) - fabsf(b.x), dn = fabsf(a.y) - fabsf(b.y);
    const float d = fast_sqrt(a.x * a.x + a.y * a.y) - fast_sqrt(b.x * b.x + b.y * b.y);
    return s ? d * d : d0 * d0 + dn * dn;
}

/* Per-frame sums over the warp's lanes without a shuffle tree per frame: each lane parks its
   part of frame f in row f % 32, and every 32 frames lane j adds up row j (padded rows: no
   bank conflicts). */
struct rows { float v[32][33]; };
__device__ double flush(rows &r, int lane) {
    __syncwarp();
    double sum = 0.0;
    _Pragma("unroll 8") for (int j = 0; j < 32; j++) sum += (double)r.v[lane][j];
    __syncwarp();
    return sum;
}

struct job { int b, n0, n1; };
__device__ bool find_job(job &J, int B, int N, int chunk) {
    const long long id = (long long)blockIdx.x * WPB + (threadIdx.x >> 5);
    const int chunks = (N + chunk - 1) / chunk;
    if (id >= (long long)B * chunks) return false;
    J.b = (int)(id % B); J.n0 = (int)(id / B) * chunk; J.n1 = min(N, J.n0 + chunk);
    return true;
}

extern "C" __global__ void __launch_bounds__(32 * WPB) dgen_sdft_loss(
        const float *hist_a, const float *a, const float *hist_b, const float *b, float *loss, int B, int N,
        int chunk) {
    __shared__ float2 tab[W];
    __shared__ float4 ahead_all[WPB][32];
    __shared__ float2 rings[WPB][RING];
    __shared__ rows part[WPB];
    fill_twiddles(tab);
    job J;
    if (!find_job(J, B, N, chunk)) return;  /* whole warps: no block-wide barrier below */
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
    rows &r = part[wi];
    const warp_io io = {rings[wi], ahead_all[wi], {hist_a, a}, {hist_b, b}, nullptr, J.b, B, N, lane};
    park_window(io, J.n0);
    float2 sa[SPL], sb[SPL];
    int t[SPL];
    _Pragma("unroll") for (int q = 0; q < SPL; q++) {
        int s = lane + 32 * q;
        t[q] = (s * J.n0) & (W - 1);
        if (s < SLOTS) direct(sa[q], sb[q], io, J.n0, s, tab);
    }
    float nyquist = (J.n0 & 1) ? -1.0f : 1.0f;
    const int count = J.n1 - J.n0;
    for (int g0 = 0; g0 < count; g0 += 32) {  /* 32 frames per group: stage, walk, flush */
        stage(io, J.n0 + g0);
        const int m = min(32, count - g0);
        _Pragma("unroll 4") for (int row = 0; row < m; row++) {
            const float4 in = io.ahead[row];
            float here = 0.0f;
            _Pragma("unroll") for (int q = 0; q < SPL; q++) {
                int s = lane + 32 * q;
                if (s < SLOTS) {
                    here += term(sa[q], sb[q], s);
                    advance(sa[q], sb[q], in, twiddle(tab, s, t[q], nyquist));
                    t[q] = (t[q] + s) & (W - 1);
                }
            }
            nyquist = -nyquist;
            r.v[row][lane] = here;
        }
        const double sum = flush(r, lane);
        if (lane < m) loss[(long long)(J.n0 + g0 + lane) * B + J.b] = (float)sum;
    }
}

/* G[n] = adj[n] * d loss_n / d S (as a conjugate): 2 (|A| - |B|) conj(A) / |A|, 0 where |A| = 0 */
__device__ float sign(float v) { return (float)((v > 0.0f) - (v < 0.0f)); }
__device__ float2 weight(float2 a, float2 b, int s, float adj) {
    const float w = 2.0f * adj, pa = a.x * a.x + a.y * a.y;
    const float f = pa > 0.0f ? w * (1.0f - fast_sqrt(b.x * b.x + b.y * b.y) * rsqrtf(pa)) : 0.0f;
    const float2 real = make_float2(w * (fabsf(a.x) - fabsf(b.x)) * sign(a.x),  /* d|x|/dx = sign(x) */
                                    w * (fabsf(a.y) - fabsf(b.y)) * sign(a.y));
    return s ? make_float2(f * a.x, -f * a.y) : real;
}
/* Re(w R) for a complex slot; R_DC + (-1)^n R_Nyquist for slot 0 (w = (1, (-1)^n)) */
__device__ float project(float2 R, int s, float2 w) {
    return s ? w.x * R.x - w.y * R.y : R.x + w.y * R.y;
}

/* dL/dx at padded p is sum_s Re(w^(s p) R_s(p)) with R_s(p) = P_s(p) - P_s(p - W), P the
   prefix sum of the weights G over windows; as w^(s p) = w^(s (p - W)), that is
   Q(p) - Q(p - W) with Q(n) = sum_s Re(w^(s n) P_s(n)): one pass over the windows with a
   single copy of the sums, Q parked in shared memory, then one subtraction per sample. */
template <bool LOSS>  /* LOSS: also the loss of each frame (the windows 0..count-1), into loss */
__device__ void grad_body(const float *a, const float *b, const float *adj, float *loss, float *grad, int B, int N,
                          int chunk) {
    __shared__ float2 tab[W];
    __shared__ float4 ahead_all[WPB][32];
    __shared__ float2 rings[WPB][RING];
    __shared__ rows part[WPB], lpart[LOSS ? WPB : 1];
    __shared__ double Qs[WPB][MAX_CHUNK + W];
    fill_twiddles(tab);
    job J;
    if (!find_job(J, B, N, chunk)) return;
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
    rows &r = part[wi];
    double *Q = Qs[wi];  /* Q[i] = Q(n0 - 1 + i); Q(n0 - 1) = 0 (no window yet) */
    /* the gradient's window history is zero */
    const warp_io io = {rings[wi], ahead_all[wi], {nullptr, a}, {nullptr, b}, adj, J.b, B, N, lane};
    park_window(io, J.n0);
    float2 sa[SPL], sb[SPL], P[SPL];
    int t[SPL];
    _Pragma("unroll") for (int q = 0; q < SPL; q++) {
        int s = lane + 32 * q;
        t[q] = (s * J.n0) & (W - 1);
        P[q] = make_float2(0.0f, 0.0f);
        if (s < SLOTS) direct(sa[q], sb[q], io, J.n0, s, tab);
    }
    float nyquist = (J.n0 & 1) ? -1.0f : 1.0f;
    const int count = J.n1 - J.n0, windows = count + W - 1;  /* every window holding a chunk sample */
    for (int g0 = 0; g0 < windows; g0 += 32) {  /* 32 windows per group: stage, walk, flush */
        stage(io, J.n0 + g0);
        const int m = min(32, windows - g0);
        _Pragma("unroll 4") for (int row = 0; row < m; row++) {
            const float4 in = io.ahead[row];
            float here = 0.0f, frame_loss = 0.0f;
            _Pragma("unroll") for (int q = 0; q < SPL; q++) {
                int s = lane + 32 * q;
                if (s < SLOTS) {
                    const float2 w = twiddle(tab, s, t[q], nyquist), g = weight(sa[q], sb[q], s, in.z);
                    if (LOSS) frame_loss += term(sa[q], sb[q], s);
                    P[q].x += g.x; P[q].y += g.y;
                    here += project(P[q], s, w);
                    advance(sa[q], sb[q], in, w);
                    t[q] = (t[q] + s) & (W - 1);
                }
            }
            nyquist = -nyquist;
            r.v[row][lane] = here;
            if (LOSS) lpart[wi].v[row][lane] = frame_loss;
        }
        const double sum = flush(r, lane);
        if (lane < m) Q[1 + g0 + lane] = sum;
        if (LOSS && g0 < count) {  /* windows past the chunk's last frame belong to the next chunk */
            const double frame_sum = flush(lpart[wi], lane);
            if (lane < min(m, count - g0)) loss[(long long)(J.n0 + g0 + lane) * B + J.b] = (float)frame_sum;
        }
    }
    if (lane == 0) Q[0] = 0.0;
    __syncwarp();
    for (int f = J.n0 + lane; f < J.n1; f += 32)  /* sample f sits at padded p = f + W - 1 */
        grad[(long long)f * B + J.b] = (float)(Q[f - J.n0 + W] - Q[f - J.n0]);
}
extern "C" __global__ void __launch_bounds__(32 * WPB) dgen_sdft_grad(
        const float *a, const float *b, const float *adj, float *grad, int B, int N, int chunk) {
    grad_body<false>(a, b, adj, nullptr, grad, B, N, chunk);
}
/* the gradient and, from the same sums, the loss of a forward pass from a zero window history */
extern "C" __global__ void __launch_bounds__(32 * WPB) dgen_sdft_grad_loss(
        const float *a, const float *b, const float *adj, float *loss, float *grad, int B, int N, int chunk) {
    grad_body<true>(a, b, adj, loss, grad, B, N, chunk);
}
"""
_MODULES = {}


def _module(cp, W: int):
    if W not in _MODULES:
        defines = f"#define W {W}\n#define MAX_CHUNK {MAX_CHUNK}\n#define WPB {WARPS_PER_BLOCK}\n"
        _MODULES[W] = cp.RawModule(code=defines + _SOURCE)
    return _MODULES[W]


def _chunk(W: int, N: int, B: int) -> int:
    """Frames per warp: about WARPS warps in all, never under W (a chunk restarts with O(W))."""
    return max(W, min(MAX_CHUNK, -(-N * B // WARPS)))


def usable(window: int, hop: int) -> bool:
    return hop == 1 and window <= MAX_WINDOW


def _launch(cp, name, W, B, N, *args):
    """(N, B) float32 result of kernel `name`, one warp per (instance, chunk of frames)."""
    out = cp.empty((N, B), cp.float32)
    if N == 0 or B == 0:  # a grid of no blocks is an invalid launch
        return out
    chunk = _chunk(W, N, B)
    jobs = -(-N // chunk) * B
    blocks = -(-jobs // WARPS_PER_BLOCK)
    _module(cp, W).get_function(name)(
        (blocks,), (32 * WARPS_PER_BLOCK,), (*args, out, cp.int32(B), cp.int32(N), cp.int32(chunk))
    )
    return out


def _f32(cp, x):
    return cp.ascontiguousarray(x, dtype=cp.float32)


def loss(cp, W, hist_a, a, hist_b, b):
    """(N, B) spectral loss per frame of a, b (N, B) after their W - 1 rows of history."""
    N, B = a.shape
    return _launch(cp, "dgen_sdft_loss", W, B, N, *(_f32(cp, v) for v in (hist_a, a, hist_b, b)))


def grad(cp, W, a, b, adj):
    """(N, B) gradient by a's samples of sum_n adj[n] loss[n] (zero window history)."""
    N, B = a.shape
    return _launch(cp, "dgen_sdft_grad", W, B, N, *(_f32(cp, v) for v in (a, b, adj)))


def grad_and_loss(cp, W, a, b, adj):
    """(gradient, loss) as `grad` and `loss` give them with a zero window history, from one
    pass: the gradient kernel walks the same windows with the same sums, so the loss of each
    frame costs a magnitude difference more per bin (a training step's forward loss)."""
    N, B = a.shape
    frame_loss = cp.empty((N, B), cp.float32)
    g = _launch(cp, "dgen_sdft_grad_loss", W, B, N, *(_f32(cp, v) for v in (a, b, adj)), frame_loss)
    return g, frame_loss
