"""Throughput of the prelude's vector math, with and without libmvec.

    python benchmarks/vector_math.py

Compiles a small C program around dgen/render/prelude.h for each configuration and prints
nanoseconds per element for vf_sin, vf_exp and vf_log over a 4096-float buffer (in L1),
best of several runs.  Numbers are quoted in docs/vector_math.md.
"""
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRELUDE_H = ROOT / "dgen" / "render" / "prelude.h"
FUNCS = ["sin", "exp", "log"]

C_SOURCE = r"""
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
    subprocess.run([cc, "-O3", "-march=native", "-fno-math-errno", "-std=c11", *cflags, str(src),
                    "-o", str(exe), *libs], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}


def main():
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        sys.exit("no C compiler")
    print(f"machine: {platform.machine()}, {_cpu_name()}; compiler: {cc}")
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
