"""`dgen export`: the standalone C library, built with the system compiler, equals `prog.run`.

Tolerance: the library is built without libmvec (scalar libm), dgen's own build may use it,
so transcendentals differ by a few ulp; through feedback that stays well under 2e-5.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from _cli_support import FX_PATCH, PATCHES, patch_file, reference_run, requires_cc

import dgen
from dgen import cli
from dgen.export import export_c
from dgen.patch import build_patch

pytestmark = requires_cc
TOL = dict(rtol=1e-4, atol=2e-5)
CFLAGS = ["-O2", "-std=c11", "-Wall", "-fno-math-errno", "-ffp-contract=off"]

DRIVER = r"""
#include "fx.h"
#include <stdio.h>
#include <stdlib.h>

/* usage: driver in.raw out.raw frames: 2 input channels in, 2 runs x 2 outputs out */
int main(int argc, char **argv) {
    (void)argc;
    int n = atoi(argv[3]);
    float *in0 = malloc(sizeof(float) * n), *in1 = malloc(sizeof(float) * n);
    float *o[4];
    for (int k = 0; k < 4; k++) o[k] = malloc(sizeof(float) * n);
    FILE *f = fopen(argv[1], "rb");
    if (fread(in0, sizeof(float), n, f) != (size_t)n || fread(in1, sizeof(float), n, f) != (size_t)n) return 5;
    fclose(f);
    fx_state *s = fx_create();
    if (fx_set_param(s, "gain", 1.25f) != 0) return 3;
    if (fx_set_param(s, "no such param", 1.0f) != -1) return 4;
    if (FX_INPUTS != 2 || FX_OUTPUTS != 2 || FX_PARAMS != 1) return 6;
    int sizes[] = {1, 7, 300, 5000};
    for (int run = 0; run < 2; run++) {
        int done = 0, k = 0;
        while (done < n) {
            int len = k < 4 ? sizes[k++] : n - done;
            if (len > n - done) len = n - done;
            const float *in[2] = {in0 + done, in1 + done};
            float *out[2] = {o[2 * run] + done, o[2 * run + 1] + done};
            fx_process(s, in, out, len);
            done += len;
        }
        fx_reset(s); /* state to zero, gain stays 1.25 */
    }
    fx_destroy(s);
    f = fopen(argv[2], "wb");
    for (int k = 0; k < 4; k++) fwrite(o[k], sizeof(float), n, f);
    fclose(f);
    return 0;
}
"""


def _cc(*args, cwd):
    from dgen.runtime.cc import find_compiler

    argv = [*find_compiler().command, *CFLAGS, *args, "-lm"]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_export_library_matches_prog_run(tmp_path):
    path = patch_file(tmp_path, FX_PATCH)
    out = tmp_path / "lib"
    assert cli.main(["export", str(path), "-o", str(out), "--name", "fx"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["Makefile", "fx.c", "fx.h", "host.c"]
    (out / "driver.c").write_text(DRIVER)
    _cc("-o", "driver", "driver.c", "fx.c", cwd=out)
    n = 9000
    x = (np.random.default_rng(1).standard_normal((2, n)) * 0.4).astype(np.float32)
    x.tofile(out / "in.raw")
    subprocess.run([str(out / "driver"), "in.raw", "out.raw", str(n)], cwd=out, check=True, timeout=60)
    got = np.fromfile(out / "out.raw", np.float32).reshape(2, 2, n)
    want = reference_run(path, n, x, params={"gain": 1.25})
    np.testing.assert_allclose(got[0], want, **TOL)
    np.testing.assert_array_equal(got[1], got[0])  # reset: same again, parameter kept


def test_exported_host_renders_wav(tmp_path):
    out = tmp_path / "saw"
    assert cli.main(["export", str(PATCHES / "lowpass_saw.py"), "-o", str(out)]) == 0
    if shutil.which("make"):
        proc = subprocess.run(
            ["make", "-s", "host", f"CFLAGS={' '.join(CFLAGS)}"], cwd=out, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
    else:
        _cc("-o", "host", "host.c", "lowpass_saw.c", cwd=out)
    subprocess.run([str(out / "host"), "out.wav", "0.25", "cutoff=1200"], cwd=out, check=True, timeout=60)
    y, rate = dgen.load_audio(out / "out.wav")
    assert rate == 44100 and y.shape == (1, 11025)
    want = reference_run(PATCHES / "lowpass_saw.py", 11025, params={"cutoff": 1200.0})
    np.testing.assert_allclose(y, want, **TOL)
    bad = subprocess.run([str(out / "host"), "o.wav", "0.1", "nope=1"], cwd=out, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown parameter nope" in bad.stderr


def test_export_refuses_losses(tmp_path):
    g = dgen.Graph()
    x = g.n(dgen.Op.phasor(g.alloc()), 100.0, 0.0)
    g.output(0, g.spectral_loss(x, g.input(0), window_size=64))
    with pytest.raises(dgen.GraphError, match="needs whole signals"):
        export_c(g, "loss")


def test_two_exports_link_together(tmp_path):
    """Stage functions are static and helpers renamed: two libraries share one program."""
    for name in ("one", "two"):
        g, _ = build_patch(PATCHES / "tone.py")
        export_c(g, name).write(tmp_path)
    (tmp_path / "main.c").write_text(
        '#include "one.h"\n#include "two.h"\nint main(void) {\n'
        "    one_state *a = one_create(); two_state *b = two_create();\n"
        "    float l[64], r[64]; float *out[2] = {l, r};\n"
        "    one_process(a, 0, out, 64); two_process(b, 0, out, 64);\n"
        "    one_destroy(a); two_destroy(b); return 0;\n}\n"
    )
    _cc("-o", "main", "main.c", "one.c", "two.c", cwd=tmp_path)
    subprocess.run([str(tmp_path / "main")], check=True, timeout=30)
