/* dgen kernel support: what generated stage functions call besides prelude.h.
 * Embedded textually after the prelude (render/c.py). */
#ifndef DGEN_ALIGNED
#define DGEN_ALIGNED __attribute__((aligned(64)))
#endif
/* Tile buffers live on the stack: a stage shrinks its tile so that they take at most this
   many bytes (safe on small thread stacks; L2-sized). Frames tiles stay multiples of W. */
#ifndef DGEN_TILE_BYTES
#define DGEN_TILE_BYTES (128 * 1024)
#endif
#define DGEN_MIN_(a, b) ((a) < (b) ? (a) : (b))
#define DGEN_MAX_(a, b) ((a) > (b) ? (a) : (b))
#define DGEN_FRAMES_TILE_(want, nbuf) \
    ((DGEN_MIN_(want, DGEN_MAX_(DGEN_W, DGEN_TILE_BYTES / (4 * (nbuf)))) + DGEN_W - 1) / DGEN_W * DGEN_W)
#define DGEN_LANES_TILE_(want, nbuf) DGEN_MIN_(want, DGEN_MAX_(1, DGEN_TILE_BYTES / (4 * DGEN_W * (nbuf))))

/* ops.md memory index: j = floor(x) wrapped into [0, size); a non-finite x gives 0.
   Integer arithmetic where it is exact, fmod in double beyond int range. */
static inline int dgen_wrap(float x, int size) {
    float f = floorf(x);
    if (f >= 0.0f && f < 2147483648.0f) {
        int j = (int)f;
        return j < size ? j : j % size;
    }
    if (f < 0.0f && f >= -2147483648.0f) {
        int j = (int)((long long)f % size);
        return j < 0 ? j + size : 0;
    }
    if (!isfinite(f)) return 0;
    double r = fmod((double)f, (double)size);
    return (int)(r < 0.0 ? r + size : r);
}
static inline float sf_mread(const float *base, float x, int size) { return base[dgen_wrap(x, size)]; }
static inline void sf_mwrite(float *base, float x, int size, float v) { base[dgen_wrap(x, size)] = v; }
static inline void sf_maccum(float *base, float x, int size, float v) { base[dgen_wrap(x, size)] += v; }
static inline float sf_mtake(float *base, float x, int size) {
    float *q = base + dgen_wrap(x, size);
    float v = *q;
    *q = 0.0f;
    return v;
}
/* lanes: slot j of lane l lives at base[j * stride + l] */
static inline vf vf_mread(const float *base, vf x, int size, size_t stride) {
    vf r;
    for (int l = 0; l < DGEN_W; l++) r[l] = base[(size_t)dgen_wrap(x[l], size) * stride + l];
    return r;
}
static inline void vf_mwrite(float *base, vf x, int size, size_t stride, vf v) {
    for (int l = 0; l < DGEN_W; l++) base[(size_t)dgen_wrap(x[l], size) * stride + l] = v[l];
}
static inline void vf_maccum(float *base, vf x, int size, size_t stride, vf v) {
    for (int l = 0; l < DGEN_W; l++) base[(size_t)dgen_wrap(x[l], size) * stride + l] += v[l];
}
static inline vf vf_mtake(float *base, vf x, int size, size_t stride) {
    vf r;
    for (int l = 0; l < DGEN_W; l++) {
        float *q = base + (size_t)dgen_wrap(x[l], size) * stride + l;
        r[l] = *q;
        *q = 0.0f;
    }
    return r;
}
/* dst[c * drow + r] = src[r * srow + c] for r < rows, c < cols: a tile of frames x lanes
   to instance-major rows (outputs) and back (inputs), W x W blocks transposed in registers
   where the ISA makes it cheap.  (GCC and Clang let float lvalues access vf memory.)
   The W row loads are written out one by one: as a loop, GCC turned them into a memcpy of the
   block to the stack (a call, then reloads) when the rows are contiguous (srow = W, every
   output tile), and the transposes took ~16% of karplus at 64 instances. */
#define DGEN_ROWS4_(r, k, load, src, srow) \
    r[k] = load(src + (k) * srow); r[(k) + 1] = load(src + ((k) + 1) * srow); \
    r[(k) + 2] = load(src + ((k) + 2) * srow); r[(k) + 3] = load(src + ((k) + 3) * srow);
#if defined(__AVX512F__) && DGEN_W == 16
static inline void dgen_tblock_(float *dst, size_t drow, const float *src, size_t srow) {
    __m512 r[16], t[16];
    DGEN_ROWS4_(r, 0, _mm512_loadu_ps, src, srow) DGEN_ROWS4_(r, 4, _mm512_loadu_ps, src, srow)
    DGEN_ROWS4_(r, 8, _mm512_loadu_ps, src, srow) DGEN_ROWS4_(r, 12, _mm512_loadu_ps, src, srow)
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        __m512d a = (__m512d)t[4 * k], b = (__m512d)t[4 * k + 1], c = (__m512d)t[4 * k + 2];
        __m512d d = (__m512d)t[4 * k + 3];
        r[4 * k] = (__m512)_mm512_unpacklo_pd(a, c);
        r[4 * k + 1] = (__m512)_mm512_unpackhi_pd(a, c);
        r[4 * k + 2] = (__m512)_mm512_unpacklo_pd(b, d);
        r[4 * k + 3] = (__m512)_mm512_unpackhi_pd(b, d);
    }
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) {
            t[8 * k + j] = _mm512_shuffle_f32x4(r[8 * k + j], r[8 * k + 4 + j], 0x88);
            t[8 * k + 4 + j] = _mm512_shuffle_f32x4(r[8 * k + j], r[8 * k + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        _mm512_storeu_ps(dst + j * drow, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
        _mm512_storeu_ps(dst + (8 + j) * drow, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd));
    }
}
#define DGEN_TBLOCK_ 1
#elif defined(__AVX__) && DGEN_W == 8
static inline void dgen_tblock_(float *dst, size_t drow, const float *src, size_t srow) {
    __m256 r[8], t[8];
    DGEN_ROWS4_(r, 0, _mm256_loadu_ps, src, srow) DGEN_ROWS4_(r, 4, _mm256_loadu_ps, src, srow)
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) {
        r[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        r[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xee);
        r[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        r[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + j * drow, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_storeu_ps(dst + (4 + j) * drow, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}
#define DGEN_TBLOCK_ 1
#endif
/* not inlined: one call per tile and slot, and one copy of the code */
__attribute__((noinline, unused)) static void dgen_transpose(float *dst, size_t drow, const float *src, size_t srow, int rows, int cols) {
    int r0 = 0;
#ifdef DGEN_TBLOCK_
    for (; r0 + DGEN_W <= rows; r0 += DGEN_W) {
        int c0 = 0;
        for (; c0 + DGEN_W <= cols; c0 += DGEN_W)
            dgen_tblock_(dst + (size_t)c0 * drow + r0, drow, src + (size_t)r0 * srow + c0, srow);
        for (int r = r0; r < r0 + DGEN_W; r++)
            for (int c = c0; c < cols; c++) dst[(size_t)c * drow + r] = src[(size_t)r * srow + c];
    }
#endif
    for (int r = r0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * drow + r] = src[(size_t)r * srow + c];
}
int dgen_width(void);
int dgen_width(void) { return DGEN_W; }

/* Memory ops with instances in lanes. Lanes that run in step (a delay line of every instance
   written at the same position: the usual case) all hold the same index, and slot j of every
   lane is one contiguous vector at base + j * stride: one load or store instead of DGEN_W
   wrapped scalar accesses. Any other index vector takes the per-lane path (vf_mread ...). */
/* f in [0, size), where floor(f) is the int conversion: one integer compare, as non-negative
   floats order as their bits (-0, negatives and NaN fail; a float below (float)size is below
   size) */
static inline int dgen_in_(float f, int size) {
    const float top = (float)size;
    uint32_t b, lim;
    memcpy(&b, &f, sizeof b);
    memcpy(&lim, &top, sizeof lim);
    return b < lim;
}
#define DGEN_LANES_ALIKE_(x) DGEN_ALL_ZERO_((vi)(x) ^ (vi)vf_splat((x)[0]))
/* every lane of x within [-b, b] or NaN */
#define DGEN_LANES_WITHIN_(x, b) DGEN_ALL_ZERO_(vf_abs(x) > vf_splat(b))
/* j when every lane of x is the same value in [0, size), else -1 */
static inline int dgen_lanes_slot_(vf x, int size) {
    return DGEN_LANES_ALIKE_(x) && dgen_in_(x[0], size) ? (int)x[0] : -1;
}
static inline vf dgen_lanes_mread(const float *base, vf x, int size, size_t stride) {
    int j = dgen_lanes_slot_(x, size);
    return j >= 0 ? vf_load(base + (size_t)j * stride) : vf_mread(base, x, size, stride);
}
static inline void dgen_lanes_mwrite(float *base, vf x, int size, size_t stride, vf v) {
    int j = dgen_lanes_slot_(x, size);
    if (j >= 0) vf_store(base + (size_t)j * stride, v);
    else vf_mwrite(base, x, size, stride, v);
}
static inline void dgen_lanes_maccum(float *base, vf x, int size, size_t stride, vf v) {
    int j = dgen_lanes_slot_(x, size);
    if (j >= 0) vf_store(base + (size_t)j * stride, vf_load(base + (size_t)j * stride) + v);
    else vf_maccum(base, x, size, stride, v);
}
static inline vf dgen_lanes_mtake(float *base, vf x, int size, size_t stride) {
    int j = dgen_lanes_slot_(x, size);
    if (j < 0) return vf_mtake(base, x, size, stride);
    vf v = vf_load(base + (size_t)j * stride);
    vf_store(base + (size_t)j * stride, vf_splat(0.0f));
    return v;
}

/* Memory ops whose index is the same in every lane whenever `alike` holds: the renderer
   proved that the index depends only on constants and on history cells that stay alike in
   every lane once they start so (a delay line's positions, counted by a phasor of a constant
   frequency), and `alike` checked those cells once per call (DGEN_LANES_ALIKE_). Then the
   slot is lane 0's: no per-frame check that the lanes agree. */
__attribute__((noinline, cold, unused, const)) static int dgen_wrap_cold_(float x, int size) { return dgen_wrap(x, size); }
static inline size_t dgen_alike_at_(vf x, int size, size_t stride) {
    const int j = __builtin_expect(dgen_in_(x[0], size), 1) ? (int)x[0] : dgen_wrap_cold_(x[0], size);
    return (size_t)j * stride;
}
/* lanes not alike (cells that started the call apart): out of line, so that each op adds
   little code to the frame loop (compile time) */
#define DGEN_COLD_ __attribute__((noinline, cold, unused)) static
__attribute__((pure)) DGEN_COLD_ vf dgen_alike_mread_(const float *base, vf x, int size, size_t stride) {
    return dgen_lanes_mread(base, x, size, stride);
}
DGEN_COLD_ void dgen_alike_mwrite_(float *base, vf x, int size, size_t stride, vf v) {
    dgen_lanes_mwrite(base, x, size, stride, v);
}
DGEN_COLD_ void dgen_alike_maccum_(float *base, vf x, int size, size_t stride, vf v) {
    dgen_lanes_maccum(base, x, size, stride, v);
}
DGEN_COLD_ vf dgen_alike_mtake_(float *base, vf x, int size, size_t stride) {
    return dgen_lanes_mtake(base, x, size, stride);
}
static inline vf dgen_alike_mread(const float *base, vf x, int size, size_t stride, int alike) {
    return alike ? vf_load(base + dgen_alike_at_(x, size, stride)) : dgen_alike_mread_(base, x, size, stride);
}
static inline void dgen_alike_mwrite(float *base, vf x, int size, size_t stride, int alike, vf v) {
    if (alike) vf_store(base + dgen_alike_at_(x, size, stride), v);
    else dgen_alike_mwrite_(base, x, size, stride, v);
}
static inline void dgen_alike_maccum(float *base, vf x, int size, size_t stride, int alike, vf v) {
    if (alike) {
        float *q = base + dgen_alike_at_(x, size, stride);
        vf_store(q, vf_load(q) + v);
    } else {
        dgen_alike_maccum_(base, x, size, stride, v);
    }
}
static inline vf dgen_alike_mtake(float *base, vf x, int size, size_t stride, int alike) {
    if (!alike) return dgen_alike_mtake_(base, x, size, stride);
    float *q = base + dgen_alike_at_(x, size, stride);
    vf v = vf_load(q);
    vf_store(q, vf_splat(0.0f));
    return v;
}
