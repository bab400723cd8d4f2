"""Throughput and accuracy of the prelude's vector math, with and without libmvec.

    python benchmarks/vector_math.py              # ns per element (seconds)
    python benchmarks/vector_math.py --sweep 7    # max ulp error, every 7th float32 (minutes)

Throughput: compiles a small C program around dgen/render/prelude.h for each configuration and
prints nanoseconds per element for vf_sin, vf_exp and vf_log over a 4096-float buffer (in L1),
best of several runs.

Sweep: for each transcendental, the max error in float32 ulps of sf_X (the C library) and of
vf_X built with libmvec at widths 16, 8 and 4, against the double-precision C function.  Unary
functions run over every STRIDE-th float32 bit pattern (STRIDE 1 is exhaustive); pow and atan2
over 2**32/STRIDE random pairs (random bits, and ranges where results are finite).
Both are quoted in docs/vector_math.md.
"""

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRELUDE_H = ROOT / "dgen" / "render" / "prelude.h"
FUNCS = ["sin", "exp", "log"]

C_SOURCE = r"""
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c11 */
#include "PRELUDE"
#include <stdio.h>
#include <time.h>
#define N 4096
static float x[3][N], y[N];
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
#define BENCH(name, row) do { \
    double best = 1e30; \
    for (int rep = 0; rep < 15; rep++) { \
        double t0 = now(); \
        for (int it = 0; it < 200; it++) \
            for (int i = 0; i < N; i += DGEN_W) vf_store(y + i, vf_##name(vf_load(x[row] + i))); \
        double dt = (now() - t0) / (200.0 * N); \
        if (dt < best) best = dt; \
    } \
    printf("%s %.3f %g\n", #name, best * 1e9, (double)y[N / 3]); \
} while (0)
int main(void) {
    for (int i = 0; i < N; i++) {
        float u = (float)i / N;
        x[0][i] = -20.0f + 40.0f * u;        /* sin: a few periods */
        x[1][i] = -40.0f + 80.0f * u;        /* exp: no overflow */
        x[2][i] = 1e-3f + 1000.0f * u;       /* log: positive */
    }
    BENCH(sin, 0);
    BENCH(exp, 1);
    BENCH(log, 2);
    return 0;
}
"""


def _mvec_available():
    spec = importlib.util.spec_from_file_location("dgen_prelude", PRELUDE_H.with_suffix(".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.mvec_available()


def configs():
    """name -> (cflags, libs)"""
    out = {"scalar lanes (no mvec)": ([], ["-lm"])}
    if _mvec_available():
        out["libmvec, native width"] = (["-DDGEN_USE_MVEC"], ["-lmvec", "-lm"])
        out["libmvec, DGEN_W=8 (AVX2)"] = (["-DDGEN_USE_MVEC", "-DDGEN_W=8"], ["-lmvec", "-lm"])
        out["libmvec, DGEN_W=4 (SSE)"] = (["-DDGEN_USE_MVEC", "-DDGEN_W=4"], ["-lmvec", "-lm"])
    return out


def run(cc, cflags, libs, tmp):
    src = Path(tmp) / "bench.c"
    src.write_text(C_SOURCE.replace("PRELUDE", str(PRELUDE_H)))
    exe = Path(tmp) / "bench"
    subprocess.run(
        [cc, "-O3", "-march=native", "-fno-math-errno", "-std=c11", *cflags, str(src), "-o", str(exe), *libs],
        check=True,
    )
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}


SWEEP_SOURCE = r"""
#include "PRELUDE"
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
/* error of float o in float32 ulps of the double r; inf for a NaN/inf mismatch */
static double ulp_err(float o, double r) {
    if (isnan(o) || isnan(r)) return isnan(o) && isnan(r) ? 0 : INFINITY;
    if (isinf(r)) return o == r ? 0 : INFINITY;
    double od = isinf(o) ? copysign(0x1p128, o) : o, rc = fmax(fmin(r, 0x1p128), -0x1p128);
    if (fabs(rc) == 0x1p128 && od != rc) return INFINITY; /* a true overflow must give inf */
    double a = fmin(fabs(rc), FLT_MAX);
    int e = a == 0 ? -200 : ilogb(a);
    return fabs(od - rc) / ldexp(1.0, e - 23 < -149 ? -149 : e - 23);
}
static uint64_t rs = 88172645463325252u;
static uint32_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)(rs >> 16); }
static float bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static float uni(double lo, double hi) { return (float)(lo + (hi - lo) * (rnd() / 4294967296.0)); }
static void pair(float *x, float *y) { /* FN(x, y) arguments: random bits or ranges with finite results */
    switch (rnd() % 4) {
    case 0: *x = bits(rnd()); *y = bits(rnd()); break;
    case 1: *x = uni(-10, 10); *y = uni(-30, 30); break;
    case 2: *x = 1 + uni(-1e-3, 1e-3); *y = uni(-2e4, 2e4); break;
    default: *x = uni(0, 100); *y = uni(-20, 20); break;
    }
}
int main(int argc, char **argv) {
    uint64_t stride = strtoull(argv[1], 0, 0);
    double mv = 0, ms = 0;
    float xv = 0, xs = 0;
    for (uint64_t b = 0; b < 0x100000000u; b += DGEN_W * stride) {
        vf x, y = vf_splat(0.0f);
        for (int i = 0; i < DGEN_W; i++) {
            if (ARITY == 1) x[i] = bits((uint32_t)(b + i * stride));
            else pair(&x[i], &y[i]);
        }
        vf v = vf_FN(ARGS(x, y));
        for (int i = 0; i < DGEN_W; i++) {
            double r = FN(ARGS(x[i], y[i])); /* the double C function */
            double ev = ulp_err(v[i], r), es = ulp_err(sf_FN(ARGS(x[i], y[i])), r);
            if (ev > mv) { mv = ev; xv = x[i]; }
            if (es > ms) { ms = es; xs = x[i]; }
        }
    }
    printf("%.3f %a %.3f %a\n", mv, xv, ms, xs);
    return 0;
}
"""
SWEEP_FUNCS = ["sin", "cos", "tan", "asin", "acos", "atan", "exp", "log", "log10", "tanh", "pow", "atan2"]


def sweep(cc, stride, tmp):
    """Max ulp errors: {fn: {'sf': e, 'W16': e, ...}}, one process per (fn, width), nproc at a time."""
    if not _mvec_available():
        sys.exit("the sweep compares libmvec variants: needs x86-64 Linux with glibc >= 2.35")
    widths = [16, 8, 4]

    def one(job):
        fn, w = job
        src = Path(tmp) / f"sweep_{fn}.c"
        src.write_text(SWEEP_SOURCE.replace("PRELUDE", str(PRELUDE_H)).replace("FN", fn))
        arity = 2 if fn in ("pow", "atan2") else 1
        args = "a, b" if arity == 2 else "a"
        exe = Path(tmp) / f"sweep_{fn}_{w}"
        subprocess.run(
            [
                cc,
                "-O2",
                "-march=native",
                "-fno-math-errno",
                "-std=c11",
                "-DDGEN_USE_MVEC",
                f"-DDGEN_W={w}",
                f"-DARITY={arity}",
                f"-DARGS(a,b)={args}",
                str(src),
                "-o",
                str(exe),
                "-lmvec",
                "-lm",
            ],
            check=True,
        )
        out = subprocess.run([str(exe), str(stride)], capture_output=True, text=True, check=True).stdout.split()
        return fn, w, float(out[0]), float(out[2])

    table = {}
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for fn, w, ev, es in pool.map(one, [(f, w) for f in SWEEP_FUNCS for w in widths]):
            table.setdefault(fn, {})["sf"] = es
            table[fn][f"W{w}"] = ev
    print(f"max ulp error, stride {stride}: sf_X (C library) and vf_X with libmvec at each width")
    print(f"{'function':10s}{'sf':>8s}" + "".join(f"{'vf W=' + str(w):>10s}" for w in widths))
    for fn, row in table.items():
        print(f"{fn:10s}{row['sf']:8.3f}" + "".join(f"{row[f'W{w}']:10.3f}" for w in widths))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", type=int, metavar="STRIDE", help="run the accuracy sweep instead")
    args = parser.parse_args()
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        sys.exit("no C compiler")
    print(f"machine: {platform.machine()}, {_cpu_name()}; compiler: {cc}")
    if args.sweep:
        with tempfile.TemporaryDirectory() as tmp:
            sweep(cc, args.sweep, tmp)
        return
    print(f"{'configuration':28s}" + "".join(f"{'vf_' + f:>10s}" for f in FUNCS) + "   (ns per element)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cflags, libs) in configs().items():
            ns = run(cc, cflags, libs, tmp)
            print(f"{name:28s}" + "".join(f"{ns[f]:10.3f}" for f in FUNCS))


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
