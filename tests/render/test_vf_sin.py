"""The inline vf_sin of prelude.h (x86-64 with FMA at the native width, with libmvec).

Its |x| <= 8192 path is a polynomial; lanes beyond go through dgen_sin_thunk_, an assembly
thunk that must preserve every register the compiled code keeps live across it.  Checked here:
the ulp bound on a dense grid of the polynomial's range and around its edge, exact C results
for the big lanes, zero signs / NaN / inf, and that fourteen vectors live across a call with
mixed lanes come back unchanged.  Loaded by path (no `import dgen`), as test_prelude.py.
"""

import importlib.util
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

PRELUDE_H = Path(__file__).resolve().parents[2] / "dgen" / "render" / "prelude.h"
CC = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc") or shutil.which("clang")
FLAGS = ["-fno-math-errno", "-std=c11", "-Wall", "-Wextra", "-Werror"]
X86 = platform.machine() in ("x86_64", "AMD64")


def _mvec():
    spec = importlib.util.spec_from_file_location("dgen_prelude", PRELUDE_H.with_suffix(".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.mvec_available()


MVEC = _mvec()

pytestmark = pytest.mark.skipif(not (CC and MVEC and X86), reason="needs x86-64, a C compiler and libmvec")

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
/* 14 vectors live across vf_sin: the thunk must keep them */
__attribute__((noinline)) static void kernel(const float *in, float *sin_out, float *live_out, int n) {
    for (int i = 0; i + DGEN_W <= n; i += DGEN_W) {
        vf x = vf_load(in + i), v[14];
        for (int k = 0; k < 14; k++) v[k] = x * vf_splat(1.0f + 0.125f * (float)k) + vf_splat((float)k);
        vf_store(sin_out + i, vf_sin(x));
        vf acc = v[0];
        for (int k = 1; k < 14; k++) acc = acc * vf_splat(0.5f) + v[k];
        vf_store(live_out + i, acc);
    }
}
int main(int argc, char **argv) {
    (void)argc;
    FILE *f = fopen(argv[1], "rb");
    static float in[1 << 21], s[1 << 21], l[1 << 21];
    int n = (int)fread(in, sizeof(float), 1 << 21, f);
    fclose(f);
    if (n % DGEN_W) return 2; /* the kernel does whole vectors only */
    kernel(in, s, l, n);
    fwrite(s, sizeof(float), (size_t)n, stdout);
    fwrite(l, sizeof(float), (size_t)n, stdout);
    return 0;
}
"""


def _fast_path(tmp_path):
    """True when this machine's native build uses the inline sin (AVX2 with FMA, no AVX-512)."""
    probe = tmp_path / "probe.c"
    probe.write_text(PRELUDE_H.read_text() + "\n#ifndef DGEN_FV_\n#error libmvec sin\n#endif\n")
    cmd = [CC, "-march=native", "-DDGEN_USE_MVEC", "-std=c11", "-fsyntax-only", str(probe)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _run(tmp_path, x, extra=()):
    src, exe, inp = tmp_path / "s.c", tmp_path / "s", tmp_path / "in.bin"
    src.write_text(PRELUDE_H.read_text() + MAIN)
    flags = [*FLAGS, "-march=native", "-DDGEN_USE_MVEC", *extra]
    subprocess.run([CC, *flags, str(src), "-o", str(exe), "-lmvec", "-lm"], check=True)
    x.astype(np.float32).tofile(inp)
    out = np.frombuffer(subprocess.run([str(exe), str(inp)], capture_output=True, check=True).stdout, np.float32)
    return out[: len(x)], out[len(x) :]


def _inputs():
    rng = np.random.default_rng(5)
    grid = np.arange(0, 0x46000001, 4099, dtype=np.uint32).view(np.float32)  # 0 .. 8192
    edge = np.linspace(8180, 8200, 20001, dtype=np.float32)
    big = rng.uniform(-1e6, 1e6, 20000).astype(np.float32)
    pi_k = (np.arange(1, 2608) * np.pi).astype(np.float32)  # near multiples of pi
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e38, -1e-30, 8192, 8192.0005], np.float32)
    x = np.concatenate([grid, -grid, edge, big, pi_k, specials])
    mixed = x.copy()
    mixed[::3] = np.resize(big, len(mixed[::3]))  # big lanes among small ones
    x = np.concatenate([x, mixed])
    return x[: len(x) // 16 * 16]  # whole vectors at any width up to 16


def _ulp(got, x):
    want = np.sin(x.astype(np.float64))
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


@pytest.mark.parametrize("opt", ["-O2", "-O0", "-O3"])
def test_inline_sin(tmp_path, opt):
    if not _fast_path(tmp_path):
        pytest.skip("the native build uses libmvec's sin here")
    x = _inputs()
    got, live = _run(tmp_path, x, [opt])
    finite = np.isfinite(x)
    assert np.all(np.isnan(got[~finite]))
    err = _ulp(got[finite], x[finite])
    assert err.max() <= 2.5, f"max {err.max():.3f} ulp at x = {x[finite][err.argmax()]!r}"
    zeros = x == 0
    assert np.array_equal(np.signbit(got[zeros]), np.signbit(x[zeros]))
    big = finite & (np.abs(x) > 8192)
    assert _ulp(got[big], x[big]).max() <= 1.0  # scalar sinf
    with np.errstate(over="ignore"):
        v = [x * np.float32(1 + 0.125 * k) + np.float32(k) for k in range(14)]
        acc = v[0]
        for k in range(1, 14):
            acc = acc * np.float32(0.5) + v[k]
    np.testing.assert_array_equal(live, acc)


def test_sanitizers(tmp_path):
    if not _fast_path(tmp_path):
        pytest.skip("the native build uses libmvec's sin here")
    x = _inputs()[::7]
    x = x[: len(x) // 16 * 16]
    got, _ = _run(tmp_path, x, ["-O3", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
    finite = np.isfinite(x)
    assert np.all(np.isnan(got[~finite]))
    assert _ulp(got[finite], x[finite]).max() <= 2.5
