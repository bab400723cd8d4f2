/* The hop-1 spectral loss and its gradient on the CPU as running sums (runtime/host_sdft.py).

   Arrays are row-major (rows, B): instance b's value at row r is x[r * B + b]. With window W
   and the padded signal x (W - 1 rows of history, then the N frames), bin k of the window
   that starts at padded index n (and ends at frame n) is, up to a phase factor,

       S_k[n] = sum_{j < W} x[n + j] w^(k (n + j)),   w = exp(-2 pi i / W),

   and S_k[n + 1] = S_k[n] + (x[n + W] - x[n]) w^(k n): O(W) per frame for all W/2 + 1 bins.
   Sums in double, magnitudes in float like the reference's. The gradient by a's samples of
   sum_n adj[n] loss[n] (zero history) is Q(p) - Q(p - W) at padded index p, with
   Q(n) = sum_k Re(w^(k n) P_k(n)), P the running sum of
   G_k[n] = adj[n] 2 (|A_k| - |B_k|) conj(S^a_k) / |S^a_k| (0 where |S^a_k| = 0).
   Both restart every CHUNK frames from sums computed directly (the gradient also runs the
   W - 1 windows past the chunk's last frame: they hold its last samples), as the CUDA
   kernels do: a huge or non-finite sample then disturbs the rest of its chunk, and the next
   chunk too when it lies in the last W - 1 frames, instead of the whole signal. Magnitudes
   square in double: |S| beyond ~1.8e19 gives inf where the reference's hypot stays finite.
   The twiddle table w^t, t < W, bins k <= W / 2 (re[t * K + k], im[t * K + k]) comes from the
   caller, made once per W. The loops over bins are vectorised (built with the loop
   vectoriser and OpenMP SIMD, unlike generated kernels: host_sdft.flags). */
#include <math.h>
#include <stddef.h>

#define CHUNK 1024

/* instance b's padded signal: W - 1 history rows (hist NULL: zeros), then the N frames */
static void gather(double *out, const float *hist, const float *x, long b, long B, long N, long W) {
    for (long p = 0; p < W - 1; p++) out[p] = hist ? (double)hist[p * B + b] : 0.0;
    for (long n = 0; n < N; n++) out[W - 1 + n] = (double)x[n * B + b];
}

/* the bins of the window starting at padded index n, directly */
static void window_at(double *sr, double *si, const double *x, long n, const double *re, const double *im, long W,
                      long K) {
    for (long k = 0; k < K; k++) sr[k] = si[k] = 0.0;
    for (long j = 0; j < W; j++) {
        const long t = ((n + j) & (W - 1)) * K;
        for (long k = 0; k < K; k++) {
            sr[k] += x[n + j] * re[t + k];
            si[k] += x[n + j] * im[t + k];
        }
    }
}

/* window n -> n + 1 */
static void advance(double *sr, double *si, double dx, const double *re, const double *im, long K) {
    for (long k = 0; k < K; k++) {
        sr[k] += dx * re[k];
        si[k] += dx * im[k];
    }
}

/* |S| in single precision, as the float32 reference takes it (np.abs of complex64) */
static inline float magnitude(double r, double i) { return sqrtf((float)(r * r + i * i)); }

struct sums {
    double *ar, *ai, *br, *bi;
};

/* the sums of both signals' window starting at padded index n */
static void restart(struct sums s, const double *xa, const double *xb, long n, const double *re, const double *im,
                    long W, long K) {
    window_at(s.ar, s.ai, xa, n, re, im, W, K);
    window_at(s.br, s.bi, xb, n, re, im, W, K);
}

/* work: 2 (N + W - 1) + 4 K doubles */
void dgen_host_sdft_loss(const float *hist_a, const float *a, const float *hist_b, const float *b, float *loss,
                         long N, long B, long W, const double *re, const double *im, double *work) {
    const long K = W / 2 + 1, L = N + W - 1;
    double *xa = work, *xb = xa + L;
    struct sums s = {xb + L, xb + L + K, xb + L + 2 * K, xb + L + 3 * K};
    for (long bi = 0; bi < B; bi++) {
        gather(xa, hist_a, a, bi, B, N, W);
        gather(xb, hist_b, b, bi, B, N, W);
        for (long n = 0; n < N; n++) {
            if (n % CHUNK == 0) restart(s, xa, xb, n, re, im, W, K);
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (long k = 0; k < K; k++) {
                const float d = magnitude(s.ar[k], s.ai[k]) - magnitude(s.br[k], s.bi[k]);
                sum += (double)(d * d);
            }
            loss[n * B + bi] = (float)sum;
            if (n + 1 < N) {
                const long t = (n & (W - 1)) * K;
                advance(s.ar, s.ai, xa[n + W] - xa[n], re + t, im + t, K);
                advance(s.br, s.bi, xb[n + W] - xb[n], re + t, im + t, K);
            }
        }
    }
}

/* The gradient of frames [m0, m1) of one instance: q[i] = Q(m0 - 1 + i) over the windows
   m0 .. m1 + W - 2 (every window holding a sample of the chunk; P is 0 before window m0). */
static void chunk_gradient(float *grad, double *q, const double *xa, const double *xb, const float *adj, long bi,
                           long B, long N, long W, long m0, long m1, const double *re, const double *im,
                           struct sums s, double *pr, double *pi_) {
    const long K = W / 2 + 1;
    for (long k = 0; k < K; k++) pr[k] = pi_[k] = 0.0;
    restart(s, xa, xb, m0, re, im, W, K);
    q[0] = 0.0;
    for (long n = m0; n < m1 + W - 1; n++) {
        const long t = (n & (W - 1)) * K;
        double here = 0.0;
        if (n < N) {
            const double w2 = 2.0 * (double)adj[n * B + bi];
#pragma omp simd
            for (long k = 0; k < K; k++) {
                const float ma = magnitude(s.ar[k], s.ai[k]), mb = magnitude(s.br[k], s.bi[k]);
                const float live = (float)(ma > 0.0f); /* 0 where |A| = 0; arithmetic, so it vectorises */
                const double f = w2 * (double)(live * ((ma - mb) / (ma + (1.0f - live))));
                pr[k] += f * s.ar[k];
                pi_[k] -= f * s.ai[k];
            }
            if (n + 1 < N) {
                advance(s.ar, s.ai, xa[n + W] - xa[n], re + t, im + t, K);
                advance(s.br, s.bi, xb[n + W] - xb[n], re + t, im + t, K);
            }
        }
#pragma omp simd reduction(+ : here)
        for (long k = 0; k < K; k++) here += re[t + k] * pr[k] - im[t + k] * pi_[k];
        q[1 + n - m0] = here;
    }
    for (long f = m0; f < m1; f++) grad[f * B + bi] = (float)(q[f - m0 + W] - q[f - m0]);
}

/* work: 2 (N + W - 1) + 6 K + (min(N, CHUNK) + W) doubles */
void dgen_host_sdft_grad(const float *adj, const float *a, const float *b, float *grad, long N, long B, long W,
                         const double *re, const double *im, double *work) {
    const long K = W / 2 + 1, L = N + W - 1;
    double *xa = work, *xb = xa + L, *rest = xb + L;
    struct sums s = {rest, rest + K, rest + 2 * K, rest + 3 * K};
    double *pr = rest + 4 * K, *pi_ = rest + 5 * K, *q = rest + 6 * K;
    for (long bi = 0; bi < B; bi++) {
        gather(xa, NULL, a, bi, B, N, W);
        gather(xb, NULL, b, bi, B, N, W);
        for (long m0 = 0; m0 < N; m0 += CHUNK) {
            const long m1 = m0 + CHUNK < N ? m0 + CHUNK : N;
            chunk_gradient(grad, q, xa, xb, adj, bi, B, N, W, m0, m1, re, im, s, pr, pi_);
        }
    }
}
