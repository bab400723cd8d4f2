"""The CUDA prelude: the sf_ helpers of the C backend's prelude.h as device functions, and
the memory-cell index of ops.md (render/cuda.py puts it at the top of every module)."""

PRELUDE = r"""
/* ---- dgen CUDA prelude: the sf_ helpers of prelude.h as device functions ---- */
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#define DGEN_D static __device__ __forceinline__
DGEN_D float sf_splat(float x) { return x; }
DGEN_D float sf_sin(float x) { return sinf(x); }
DGEN_D float sf_cos(float x) { return cosf(x); }
DGEN_D float sf_tan(float x) { return tanf(x); }
DGEN_D float sf_asin(float x) { return asinf(x); }
DGEN_D float sf_acos(float x) { return acosf(x); }
DGEN_D float sf_atan(float x) { return atanf(x); }
DGEN_D float sf_exp(float x) { return expf(x); }
DGEN_D float sf_log(float x) { return logf(x); }
DGEN_D float sf_log10(float x) { return log10f(x); }
DGEN_D float sf_sqrt(float x) { return sqrtf(x); }
DGEN_D float sf_tanh(float x) { return tanhf(x); }
DGEN_D float sf_pow(float a, float b) { return powf(a, b); }
DGEN_D float sf_atan2(float y, float x) { return atan2f(y, x); }
DGEN_D float sf_fmod(float a, float b) { return fmodf(a, b); }
DGEN_D float sf_floor(float x) { return floorf(x); }
DGEN_D float sf_ceil(float x) { return ceilf(x); }
DGEN_D float sf_round(float x) { return roundf(x); }
DGEN_D float sf_abs(float x) { return fabsf(x); }
DGEN_D float sf_min(float a, float b) { return (b < a || a != a) ? b : a; }
DGEN_D float sf_max(float a, float b) { return (b > a || a != a) ? b : a; }
DGEN_D float sf_sign(float x) { return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x != x ? x : 0.0f; }
DGEN_D float sf_gt(float a, float b) { return a > b ? 1.0f : 0.0f; }
DGEN_D float sf_lt(float a, float b) { return a < b ? 1.0f : 0.0f; }
DGEN_D float sf_gte(float a, float b) { return a >= b ? 1.0f : 0.0f; }
DGEN_D float sf_lte(float a, float b) { return a <= b ? 1.0f : 0.0f; }
DGEN_D float sf_eq(float a, float b) { return a == b ? 1.0f : 0.0f; }
DGEN_D float sf_select(float cond, float a, float b) { return cond > 0.0f ? a : b; }

/* ops.md memory index: j = floor(x) wrapped into [0, size); a non-finite x gives 0 */
DGEN_D int dgen_wrap(float x, int size) {
    float f = floorf(x);
    if (f >= 0.0f && f < 2147483648.0f) {
        int j = (int)f;
        return j < size ? j : j % size;
    }
    if (f < 0.0f && f >= -2147483648.0f) {
        int j = (int)((long long)f % size);
        return j < 0 ? j + size : 0;
    }
    if (!(fabsf(f) <= 3.402823466e38f)) return 0;
    double r = fmod((double)f, (double)size);
    return (int)(r < 0.0 ? r + size : r);
}
/* slot j of instance b lives at base[j * stride] (base already points at instance b) */
DGEN_D float sf_mread(const float *base, float x, int size, int stride) {
    return base[(long long)dgen_wrap(x, size) * stride];
}
DGEN_D void sf_mwrite(float *base, float x, int size, int stride, float v) {
    base[(long long)dgen_wrap(x, size) * stride] = v;
}
DGEN_D void sf_maccum(float *base, float x, int size, int stride, float v) {
    base[(long long)dgen_wrap(x, size) * stride] += v;
}
DGEN_D float sf_mtake(float *base, float x, int size, int stride) {
    float *q = base + (long long)dgen_wrap(x, size) * stride;
    float v = *q;
    *q = 0.0f;
    return v;
}
"""
