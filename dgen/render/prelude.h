/* dgen prelude: vector types and elementwise math for generated kernels.
 *
 * Embedded textually at the top of every generated C file.  Plain C11 with
 * GCC/Clang vector extensions; no -ffast-math (it breaks NaN semantics).
 *
 *   DGEN_W          SIMD width in floats (16 AVX-512F, 8 AVX/AVX2, else 4);
 *                   may be set with -DDGEN_W=n (a power of two).
 *   DGEN_USE_MVEC   defined by the Python side when it links -lmvec: the
 *                   transcendentals then call glibc's libmvec vector variants
 *                   (x86-64 only).  Otherwise they loop over lanes calling the
 *                   scalar C function, which is portable everywhere.
 *
 * vf_X works on a vector, sf_X on a float; both have exactly the semantics of
 * the C float function X (NaN in -> NaN out, C inf handling).  Comparisons
 * give 1.0f / 0.0f; a condition is true when > 0 (NaN is false).
 * Accuracy of the libmvec variants is measured in docs/vector_math.md.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#ifndef DGEN_W
#if defined(__AVX512F__)
#define DGEN_W 16
#elif defined(__AVX2__) || defined(__AVX__)
#define DGEN_W 8
#else
#define DGEN_W 4
#endif
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* A vector wider than the enabled ISA (e.g. -DDGEN_W=16 without AVX-512)
   makes GCC warn about an ABI change.  Every vf function here is static
   inline, so no ABI boundary is crossed.  GCC also prints a "parameters with
   64-byte alignment" note that only the command-line -Wno-psabi silences. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float vf __attribute__((vector_size(DGEN_W * 4)));
typedef int32_t vi __attribute__((vector_size(DGEN_W * 4)));

/* ---- construction, memory, bit helpers -------------------------------- */

static inline vf vf_splat(float x) {
    vf v;
    for (int i = 0; i < DGEN_W; i++) v[i] = x; /* compiles to one broadcast */
    return v;
}
static inline vi vi_splat(int32_t x) { return (vi){0} + x; }
static inline vf vf_load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vf_store(float *p, vf v) { memcpy(p, &v, sizeof v); }

#define DGEN_SIGN_BITS INT32_MIN /* 0x80000000 */
#define DGEN_ONE_BITS 0x3f800000 /* 1.0f */
/* m ? a : b per lane, m a comparison mask (all ones / all zeros).  Vector ?:
   is C++-only in GCC, so select with bits. */
static inline vf dgen_blend_(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
/* Masks with float constants as float and/andnot on AVX: GCC 12 builds an integer splat
   constant from a general register (mov, vmovd, vpbroadcastd) and, short of registers,
   rebuilds it in every pass of a hot loop; a float constant is one broadcast load (karplus
   at 64 instances: 3 such constants per frame, +4-8%). The same bits either way. */
#if defined(__AVX__) && DGEN_W == 8
#define DGEN_ANDF_(a, b) ((vi)_mm256_and_ps((__m256)(a), (__m256)(b)))
#define DGEN_ANDNOTF_(a, b) ((vi)_mm256_andnot_ps((__m256)(a), (__m256)(b)))
#else
#define DGEN_ANDF_(a, b) ((vi)(a) & (vi)(b))
#define DGEN_ANDNOTF_(a, b) (~(vi)(a) & (vi)(b))
#endif
static inline vf dgen_mask01_(vi m) { return (vf)DGEN_ANDF_(m, vf_splat(1.0f)); }
static inline vi dgen_signbit_(vf x) { return DGEN_ANDF_(x, vf_splat(-0.0f)); }
/* DGEN_ALL_ZERO_(d): every bit of the vi d is 0 (one vptest where the ISA has it) */
#if defined(__AVX512F__) && DGEN_W == 16
#define DGEN_ALL_ZERO_(d) (_mm512_test_epi32_mask((__m512i)(d), (__m512i)(d)) == 0)
#elif defined(__AVX__) && DGEN_W == 8
#define DGEN_ALL_ZERO_(d) _mm256_testz_si256((__m256i)(d), (__m256i)(d))
#elif defined(__SSE4_1__) && DGEN_W == 4
#define DGEN_ALL_ZERO_(d) _mm_testz_si128((__m128i)(d), (__m128i)(d))
#else
static inline int dgen_all_zero_(vi d) {
    int32_t any = 0;
    for (int l = 0; l < DGEN_W; l++) any |= d[l];
    return any == 0;
}
#define DGEN_ALL_ZERO_(d) dgen_all_zero_(d)
#endif

/* ---- denormals: flush to zero inside a kernel --------------------------
   Use as the first and last statements of a block:
       DGEN_FTZ_BEGIN  ...loads, work, stores...  DGEN_FTZ_END
   The previous mode is saved in a local and restored by DGEN_FTZ_END.
   Compilers do not treat the FP mode as a dependency of arithmetic, so both
   ends are memory barriers: loads after BEGIN and stores before END stay
   inside, and with them all work computed from those loads. */
#define DGEN_BARRIER_ __asm__ __volatile__("" : : : "memory");
#if defined(__SSE__) || defined(__x86_64__)
/* MXCSR bit 15 = FTZ, bit 6 = DAZ */
#define DGEN_FTZ_BEGIN \
    unsigned int dgen_saved_csr_ = _mm_getcsr(); \
    _mm_setcsr(dgen_saved_csr_ | 0x8040u); DGEN_BARRIER_
#define DGEN_FTZ_END DGEN_BARRIER_ _mm_setcsr(dgen_saved_csr_);
#elif defined(__aarch64__)
/* FPCR bit 24 = FZ */
#define DGEN_FTZ_BEGIN \
    uint64_t dgen_saved_fpcr_; \
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(dgen_saved_fpcr_)); \
    __asm__ __volatile__("msr fpcr, %0" : : "r"(dgen_saved_fpcr_ | (UINT64_C(1) << 24)) : "memory");
#define DGEN_FTZ_END __asm__ __volatile__("msr fpcr, %0" : : "r"(dgen_saved_fpcr_) : "memory");
#else
#define DGEN_FTZ_BEGIN
#define DGEN_FTZ_END
#endif

/* ---- exact vector ops: comparisons, select, abs, sign, min, max -------- */

static inline vf vf_gt(vf a, vf b) { return dgen_mask01_(a > b); }
static inline vf vf_lt(vf a, vf b) { return dgen_mask01_(a < b); }
static inline vf vf_gte(vf a, vf b) { return dgen_mask01_(a >= b); }
static inline vf vf_lte(vf a, vf b) { return dgen_mask01_(a <= b); }
static inline vf vf_eq(vf a, vf b) { return dgen_mask01_(a == b); }
static inline vf vf_select(vf cond, vf a, vf b) { return dgen_blend_(cond > vf_splat(0.0f), a, b); }
static inline vf vf_abs(vf x) { return (vf)DGEN_ANDNOTF_(vf_splat(-0.0f), x); }
/* -1, 0, +1; sign(+-0) = +0 (as numpy); NaN -> the same NaN */
static inline vf vf_sign(vf x) {
    vi r = ((x > vf_splat(0.0f)) & vi_splat(DGEN_ONE_BITS))
         | ((x < vf_splat(0.0f)) & vi_splat(DGEN_SIGN_BITS | DGEN_ONE_BITS))
         | ((x != x) & (vi)x);
    return (vf)r;
}
/* fminf/fmaxf: a NaN operand yields the other one; on a tie (+0 vs -0) the
   first operand is returned, as glibc does. */
static inline vf vf_min(vf a, vf b) { return dgen_blend_((b < a) | (a != a), b, a); }
static inline vf vf_max(vf a, vf b) { return dgen_blend_((b > a) | (a != a), b, a); }

/* ---- floor, ceil, round, sqrt: one instruction where the ISA has it ---- */

#if defined(__AVX512F__) && DGEN_W == 16
#define DGEN_RND_(x, mode) ((vf)_mm512_roundscale_ps((__m512)(x), (mode) | _MM_FROUND_NO_EXC))
static inline vf vf_sqrt(vf x) { return (vf)_mm512_sqrt_ps((__m512)x); }
#elif defined(__AVX__) && DGEN_W == 8
#define DGEN_RND_(x, mode) ((vf)_mm256_round_ps((__m256)(x), (mode) | _MM_FROUND_NO_EXC))
static inline vf vf_sqrt(vf x) { return (vf)_mm256_sqrt_ps((__m256)x); }
#elif defined(__SSE4_1__) && DGEN_W == 4
#define DGEN_RND_(x, mode) ((vf)_mm_round_ps((__m128)(x), (mode) | _MM_FROUND_NO_EXC))
static inline vf vf_sqrt(vf x) { return (vf)_mm_sqrt_ps((__m128)x); }
#elif defined(__aarch64__) && DGEN_W == 4
#define DGEN_NEON_ROUND_ 1
static inline vf vf_sqrt(vf x) { return (vf)vsqrtq_f32((float32x4_t)x); }
#else
/* no vector sqrt in the generic extensions; compilers vectorise this loop
   (needs -fno-math-errno, which dgen always passes) */
static inline vf vf_sqrt(vf x) {
    vf r;
    for (int i = 0; i < DGEN_W; i++) r[i] = sqrtf(x[i]);
    return r;
}
#endif

#if defined(DGEN_RND_)
static inline vf vf_floor(vf x) { return DGEN_RND_(x, _MM_FROUND_TO_NEG_INF); }
static inline vf vf_ceil(vf x) { return DGEN_RND_(x, _MM_FROUND_TO_POS_INF); }
static inline vf dgen_trunc_(vf x) { return DGEN_RND_(x, _MM_FROUND_TO_ZERO); }
#elif defined(DGEN_NEON_ROUND_)
static inline vf vf_floor(vf x) { return (vf)vrndmq_f32((float32x4_t)x); }
static inline vf vf_ceil(vf x) { return (vf)vrndpq_f32((float32x4_t)x); }
static inline vf dgen_trunc_(vf x) { return (vf)vrndq_f32((float32x4_t)x); }
#else
/* Generic: |x| >= 2^23, inf and NaN are already integral (returned as is);
   smaller values round-trip through int32.  The result keeps x's sign bit,
   so -0.5 truncates to -0. */
static inline vf dgen_trunc_(vf x) {
    vi small = vf_abs(x) < vf_splat(8388608.0f);
    vf xs = (vf)((vi)x & small); /* keep out-of-range lanes out of the cast */
    vf t = __builtin_convertvector(__builtin_convertvector(xs, vi), vf);
    t = (vf)((vi)t | dgen_signbit_(x));
    return dgen_blend_(small, t, x);
}
static inline vf vf_floor(vf x) {
    vf t = dgen_trunc_(x);
    return t - dgen_mask01_(t > x); /* -0 - +0 stays -0 */
}
static inline vf vf_ceil(vf x) {
    vf t = dgen_trunc_(x);
    /* add +-0 with x's sign when no step, so ceil(-0.5) = -0 */
    return t + (vf)((vi)dgen_mask01_(t < x) | dgen_signbit_(x));
}
#endif

/* roundf: half away from zero.  x - trunc(x) is exact, so no double rounding
   (0.49999997f stays 0).  The added +-1 / +-0 carries x's sign. */
#if defined(DGEN_NEON_ROUND_)
static inline vf vf_round(vf x) { return (vf)vrndaq_f32((float32x4_t)x); }
#else
static inline vf vf_round(vf x) {
    vf t = dgen_trunc_(x);
    vi step = vf_abs(x - t) >= vf_splat(0.5f);
    return t + (vf)((step & vi_splat(DGEN_ONE_BITS)) | dgen_signbit_(x));
}
#endif

/* ---- transcendentals: libmvec or a loop over lanes ---------------------
   libmvec (glibc >= 2.35 for all of these) names vector variants by the
   vector function ABI: _ZGV<isa>N<lanes><v per arg>_<name>, isa b = SSE4,
   c = AVX, d = AVX2, e = AVX-512.  Its float vectors are passed like
   __m128/__m256/__m512, which a GCC vector of the same size matches.  The
   widest variant that divides DGEN_W is used, called once per chunk. */
#if defined(DGEN_USE_MVEC) && defined(__x86_64__) && defined(__linux__)
#if defined(__AVX512F__) && DGEN_W % 16 == 0
#define DGEN_MVEC_W 16
#define DGEN_MV1_(f) _ZGVeN16v_##f
#define DGEN_MV2_(f) _ZGVeN16vv_##f
#elif defined(__AVX2__) && DGEN_W % 8 == 0
#define DGEN_MVEC_W 8
#define DGEN_MV1_(f) _ZGVdN8v_##f
#define DGEN_MV2_(f) _ZGVdN8vv_##f
#elif defined(__AVX__) && DGEN_W % 8 == 0
#define DGEN_MVEC_W 8
#define DGEN_MV1_(f) _ZGVcN8v_##f
#define DGEN_MV2_(f) _ZGVcN8vv_##f
#elif DGEN_W % 4 == 0
#define DGEN_MVEC_W 4
#define DGEN_MV1_(f) _ZGVbN4v_##f
#define DGEN_MV2_(f) _ZGVbN4vv_##f
#endif
#endif

#ifdef DGEN_MVEC_W
typedef float dgen_mvf_ __attribute__((vector_size(DGEN_MVEC_W * 4)));
static inline vf dgen_mv_apply1_(dgen_mvf_ (*f)(dgen_mvf_), vf x) {
    vf r;
    for (int i = 0; i < DGEN_W; i += DGEN_MVEC_W) {
        dgen_mvf_ c;
        memcpy(&c, (const float *)&x + i, sizeof c);
        c = f(c);
        memcpy((float *)&r + i, &c, sizeof c);
    }
    return r;
}
static inline vf dgen_mv_apply2_(dgen_mvf_ (*f)(dgen_mvf_, dgen_mvf_), vf x, vf y) {
    vf r;
    for (int i = 0; i < DGEN_W; i += DGEN_MVEC_W) {
        dgen_mvf_ c, d;
        memcpy(&c, (const float *)&x + i, sizeof c);
        memcpy(&d, (const float *)&y + i, sizeof d);
        c = f(c, d);
        memcpy((float *)&r + i, &c, sizeof c);
    }
    return r;
}
#define DGEN_VEC1_(name, cfn) \
    dgen_mvf_ DGEN_MV1_(cfn)(dgen_mvf_); \
    static inline vf vf_##name(vf x) { return dgen_mv_apply1_(DGEN_MV1_(cfn), x); }
#define DGEN_VEC2_(name, cfn) \
    dgen_mvf_ DGEN_MV2_(cfn)(dgen_mvf_, dgen_mvf_); \
    static inline vf vf_##name(vf x, vf y) { return dgen_mv_apply2_(DGEN_MV2_(cfn), x, y); }
#else
#define DGEN_VEC1_(name, cfn) DGEN_LANES1_(name, cfn)
#define DGEN_VEC2_(name, cfn) DGEN_LANES2_(name, cfn)
#endif

/* per-lane loops over the scalar C function (exact C semantics) */
#define DGEN_LANES1_(name, cfn) \
    static inline vf vf_##name(vf x) { \
        vf r = x; /* every lane is overwritten; `vf r;` made GCC warn (AVX-512, no libmvec) */ \
        for (int i = 0; i < DGEN_W; i++) r[i] = cfn(x[i]); \
        return r; \
    }
#define DGEN_LANES2_(name, cfn) \
    static inline vf vf_##name(vf x, vf y) { \
        vf r = x; \
        for (int i = 0; i < DGEN_W; i++) r[i] = cfn(x[i], y[i]); \
        return r; \
    }

#if defined(DGEN_USE_MVEC) && defined(__x86_64__) && defined(__GNUC__) && defined(__FMA__) \
    && defined(__AVX2__) && !defined(__AVX512F__) && DGEN_W == 8
/* Inline sin for AVX2 with FMA (W = 8; AVX-512 keeps libmvec's 16-lane call, not measured
   here): libmvec's call made GCC spill every live vector register around each sin (all
   are caller-saved), which cost more than the sin.  |x| <= 8192: q = rint(x / pi),
   r = x - q*pi with pi in three FMA parts (the first product is exact, and so is
   x - q*C1), then SLEEF's sinf_u35 polynomial on [-pi/2, pi/2] (accuracy:
   docs/vector_math.md).  Lanes with |x| > 8192 (and inf) take scalar sinf through
   dgen_sin_thunk_, which saves every register itself, so the hot loop keeps its registers:
   its cold branch spills nothing.  The vector travels on the stack below the red zone:
   the thunk finds it at 8(%rsp) on entry and overwrites it with the result. */
#define DGEN_FV_(f) _mm256_##f
#define DGEN_FVT_ __m256
static inline vf dgen_fma_(vf a, vf b, vf c) {
    return (vf)DGEN_FV_(fmadd_ps)((DGEN_FVT_)a, (DGEN_FVT_)b, (DGEN_FVT_)c);
}
/* p is the caller's stack below its frame, which ASan does not track */
__attribute__((used, noinline, no_sanitize_address)) static void dgen_sin_lanes_(float *p) {
    for (int l = 0; l < DGEN_W; l++) p[l] = sinf(p[l]);
}
#define DGEN_SV_(i) "vmovups %ymm" #i "," #i "*32(%rsp)\n"
#define DGEN_LV_(i) "vmovups " #i "*32(%rsp),%ymm" #i "\n"
#define DGEN_REGS_(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
__asm__(".pushsection .text\n.p2align 4\n.type dgen_sin_thunk_, @function\ndgen_sin_thunk_:\n"
        "pushq %rbp\nmovq %rsp,%rbp\npushfq\npushq %rax\npushq %rcx\npushq %rdx\npushq %rsi\n"
        "pushq %rdi\npushq %r8\npushq %r9\npushq %r10\npushq %r11\n"
        "andq $-32,%rsp\nsubq $512,%rsp\n" DGEN_REGS_(DGEN_SV_)
        "leaq 16(%rbp),%rdi\ncall dgen_sin_lanes_\n" DGEN_REGS_(DGEN_LV_)
        "leaq -80(%rbp),%rsp\npopq %r11\npopq %r10\npopq %r9\npopq %r8\npopq %rdi\npopq %rsi\n"
        "popq %rdx\npopq %rcx\npopq %rax\npopfq\npopq %rbp\nret\n"
        ".size dgen_sin_thunk_, .-dgen_sin_thunk_\n.popsection\n");

/* the polynomial path alone: exact for |x| <= 8192 (and NaN) */
/* always_inline: with a stage's tile loop in two copies GCC stopped inlining it (calls, spills) */
static inline __attribute__((always_inline)) vf dgen_sin_core_(vf x) {
    /* q = rint(x / pi) by the 1.5 * 2^23 trick (its low bit is q's parity); pi in three
       parts rounded down, so every q * -C is -0 when q = 0 and sin(-0) stays -0 */
    const vf t = dgen_fma_(x, vf_splat(0x1.45f306p-2f), vf_splat(0x1.8p23f));
    const vf q = t - vf_splat(0x1.8p23f);
    vf r = dgen_fma_(q, vf_splat(-0x1.921fb4p+1f), x); /* exact */
    r = dgen_fma_(q, vf_splat(-0x1.4442dp-23f), r);
    r = dgen_fma_(q, vf_splat(-0x1.84698ap-47f), r);
    const vf z = r * r; /* SLEEF's sinf_u35 polynomial on [-pi/2, pi/2] */
    vf u = dgen_fma_(vf_splat(2.6083159809786593541503e-06f), z, vf_splat(-0.0001981069071916863322258f));
    u = dgen_fma_(u, z, vf_splat(0.00833307858556509017944336f));
    u = dgen_fma_(u, z, vf_splat(-0.166666597127914428710938f));
    vf y = dgen_fma_(z, u * r, r);
    y = (vf)((vi)y | dgen_signbit_(r)); /* the sign of r, so that r = -0 gives -0 */
    return (vf)((vi)y ^ ((vi)t << 31)); /* sin(r + q pi) = (-1)^q sin(r) */
}
static inline vf vf_sin(vf x) {
    vf y = dgen_sin_core_(x);
    const vf a = vf_abs(x);
    const vi big = a > vf_splat(8192.0f);
    if (__builtin_expect(!DGEN_ALL_ZERO_(big), 0)) {
        vf b = x; /* past the red zone, then sinf per lane in place */
        __asm__("leaq -192(%%rsp),%%rsp\n\tvmovups %0,(%%rsp)\n\tcall dgen_sin_thunk_\n\t"
                "vmovups (%%rsp),%0\n\tleaq 192(%%rsp),%%rsp"
                : "+x"(b));
        y = dgen_blend_(big, b, y);
    }
    return y;
}
/* stages whose sin arguments the renderer proved within +-8192 (given history cells it checks
   once per call) also have a copy of their tile loop calling dgen_sin_core_ (render/c.py) */
#define DGEN_SIN_CORE_ 1
#else
DGEN_VEC1_(sin, sinf)
#endif
DGEN_VEC1_(cos, cosf)
DGEN_VEC1_(tan, tanf)
DGEN_VEC1_(asin, asinf)
DGEN_VEC1_(acos, acosf)
DGEN_VEC1_(atan, atanf)
DGEN_VEC1_(exp, expf)
DGEN_VEC1_(log, logf)
DGEN_VEC1_(log10, log10f)
DGEN_VEC1_(tanh, tanhf)
DGEN_VEC2_(pow, powf)
DGEN_VEC2_(atan2, atan2f)
DGEN_LANES2_(fmod, fmodf) /* not in libmvec */

/* ---- scalar helpers: same names with sf_ ------------------------------- */

static inline float sf_splat(float x) { return x; } /* ops spell constants {p}_splat(c) */
static inline float sf_sin(float x) { return sinf(x); }
static inline float sf_cos(float x) { return cosf(x); }
static inline float sf_tan(float x) { return tanf(x); }
static inline float sf_asin(float x) { return asinf(x); }
static inline float sf_acos(float x) { return acosf(x); }
static inline float sf_atan(float x) { return atanf(x); }
static inline float sf_exp(float x) { return expf(x); }
static inline float sf_log(float x) { return logf(x); }
static inline float sf_log10(float x) { return log10f(x); }
static inline float sf_sqrt(float x) { return sqrtf(x); }
static inline float sf_tanh(float x) { return tanhf(x); }
static inline float sf_pow(float a, float b) { return powf(a, b); }
static inline float sf_atan2(float y, float x) { return atan2f(y, x); }
static inline float sf_fmod(float a, float b) { return fmodf(a, b); }
static inline float sf_floor(float x) { return floorf(x); }
static inline float sf_ceil(float x) { return ceilf(x); }
static inline float sf_round(float x) { return roundf(x); }
static inline float sf_abs(float x) { return fabsf(x); }
/* explicit rather than fminf/fmaxf: the +-0 tie is unspecified in C and the
   compiler may inline either; this matches glibc and vf_min/vf_max. */
static inline float sf_min(float a, float b) { return (b < a || a != a) ? b : a; }
static inline float sf_max(float a, float b) { return (b > a || a != a) ? b : a; }
static inline float sf_sign(float x) { return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x != x ? x : 0.0f; }
static inline float sf_gt(float a, float b) { return a > b ? 1.0f : 0.0f; }
static inline float sf_lt(float a, float b) { return a < b ? 1.0f : 0.0f; }
static inline float sf_gte(float a, float b) { return a >= b ? 1.0f : 0.0f; }
static inline float sf_lte(float a, float b) { return a <= b ? 1.0f : 0.0f; }
static inline float sf_eq(float a, float b) { return a == b ? 1.0f : 0.0f; }
static inline float sf_select(float cond, float a, float b) { return cond > 0.0f ? a : b; }
