"""The C backend's hop-1 spectral loss as running sums in C (runtime/host_sdft.c): against the
NumPy reference (an FFT per window, float64 here), the gradient against the reference and
central differences, the window history across calls, whole training steps against the
reference backend; the C source warning-free and clean under the sanitizers."""

import os
import subprocess

import numpy as np
import pytest
from _csupport import requires_cc

import dgen
from dgen import Op
from dgen.runtime import cc, host_sdft

pytestmark = requires_cc


@pytest.mark.parametrize("window", [4, 64, 256])
@pytest.mark.parametrize("instances", [1, 3])
def test_loss_matches_fft_reference_across_calls(window, instances):
    op = Op.spectral_loss(dgen.Graph().alloc(2 * window - 1), window, 1)
    shape = (lambda n: (n,)) if instances == 1 else (lambda n: (n, instances))
    mem_ref, mem_c = np.zeros(shape(2 * window - 1)), np.zeros(shape(2 * window - 1), np.float32)
    rng = np.random.default_rng(window + instances)
    for frames in (700, 3, 2500):  # the history is carried from call to call; 2500: restarts
        a, b = (rng.standard_normal(shape(frames)).astype(np.float32) for _ in range(2))
        want = op.run(mem_ref, 0, a.astype(np.float64), b.astype(np.float64))
        got = host_sdft.spectral_loss(op, mem_c, 0, a, b)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
        np.testing.assert_allclose(mem_c, mem_ref, rtol=0, atol=0)


@pytest.mark.parametrize("window", [8, 64])
def test_gradient_matches_reference_and_central_differences(window):
    gop = Op.spectral_loss_grad(window, 1)
    op = Op.spectral_loss(dgen.Graph().alloc(2 * window - 1), window, 1)
    rng = np.random.default_rng(2)
    frames, instances = 600, 2
    a, b, adj = (rng.standard_normal((frames, instances)) for _ in range(3))
    want = gop.ref(adj, a, b)
    got = host_sdft.spectral_loss_grad(gop, *(v.astype(np.float32) for v in (adj, a, b)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    for m in (0, window - 1, frames // 2, frames - 1):
        bumped = []
        for h in (1e-5, -1e-5):
            x = a.copy()
            x[m, 0] += h
            bumped.append(np.sum(adj[:, 0] * op.ref(x, b)[:, 0]))
        fd = (bumped[0] - bumped[1]) / 2e-5
        assert abs(got[m, 0] - fd) <= 1e-3 * max(1.0, abs(fd)), (m, got[m, 0], fd)


@pytest.mark.parametrize("spike", [1e30, np.nan])
@pytest.mark.parametrize("at", [100, host_sdft.CHUNK - 5])
def test_a_wild_sample_disturbs_only_its_chunk_and_the_next(spike, at):
    """Running sums keep what a sample added until it leaves the window, up to rounding: a
    huge (or non-finite) sample would spoil every later window. They restart every CHUNK
    frames from directly computed sums, so from two chunks on they agree with the FFT
    reference again (the next chunk's first window still holds a sample in the last W - 1
    frames of a chunk)."""
    W, frames = 64, 4096
    assert 2 * host_sdft.CHUNK <= 2048  # restarts between the spike and frame 2048
    op = Op.spectral_loss(dgen.Graph().alloc(2 * W - 1), W, 1)
    gop = Op.spectral_loss_grad(W, 1)
    rng = np.random.default_rng(4)
    a, b, adj = (rng.standard_normal(frames) for _ in range(3))
    a[at] = spike
    with np.errstate(all="ignore"):
        want = op.ref(a, b)
        got = host_sdft.spectral_loss(op, np.zeros(2 * W - 1, np.float32), 0, *(v.astype(np.float32) for v in (a, b)))
        want_grad = gop.ref(adj, a, b)
        got_grad = host_sdft.spectral_loss_grad(gop, *(v.astype(np.float32) for v in (adj, a, b)))
    later = slice(2048, None)
    np.testing.assert_allclose(got[later], want[later], rtol=1e-5, atol=1e-6 * np.abs(want[later]).max())
    later_grad = slice(2048, None)
    np.testing.assert_allclose(
        got_grad[later_grad], want_grad[later_grad], rtol=1e-4, atol=1e-5 * np.abs(want_grad[later_grad]).max()
    )


def _fit(instances):
    g = dgen.Graph()
    freq = dgen.Parameter(g, np.linspace(250.0, 350.0, instances), name="f", min=20.0, max=5000.0)
    learned = g.n(Op.sin, g.n(Op.phasor(g.alloc()), freq.node(), 0.0) * 6.283185307179586)
    target = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 300.0, 0.0) * 6.283185307179586)
    loss = 100.0 * g.spectral_loss(learned, target, 64) + g.spectral_loss(learned, target, 512)
    g.output(0, loss)
    return g, [freq], loss


@pytest.mark.parametrize("instances", [1, 4])
def test_training_step_matches_reference_backend(instances):
    """Loss and gradient of a C training step (running sums for window 64; window 512 keeps
    the FFT path) against the float32 reference backend."""
    results = []
    for backend, kw in (("c", {}), ("reference", {"dtype": np.float32})):
        g, params, loss = _fit(instances)
        prog = dgen.compile(g, backend=backend, frame_count=2048, backwards=True, instances=instances, **kw)
        value, grads = prog.forward_backward(loss)
        results.append((np.atleast_1d(value), np.atleast_1d(grads[params[0]])))
    (lc, gc), (lr, gr) = results
    np.testing.assert_allclose(lc, lr, rtol=1e-5)
    np.testing.assert_allclose(gc, gr, rtol=1e-3, atol=1e-4 * np.abs(gr).max())


HARNESS = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
void dgen_host_sdft_loss(const float *, const float *, const float *, const float *, float *, long, long, long,
                         const double *, const double *, double *);
void dgen_host_sdft_grad(const float *, const float *, const float *, float *, long, long, long, const double *,
                         const double *, double *);
int main(void) {
    const long W = 16, K = W / 2 + 1, B = 3;
    const long sizes[] = {0, 1, 5, 40, CHUNK, 2 * CHUNK + 5};
    double *re = malloc(sizeof(double) * W * K), *im = malloc(sizeof(double) * W * K);
    for (long i = 0; i < W * K; i++) { re[i] = cos(0.1 * (double)i); im[i] = sin(0.1 * (double)i); }
    for (int c = 0; c < 6; c++) {
        const long N = sizes[c], chunk = N < CHUNK ? N : CHUNK;
        float *a = malloc(sizeof(float) * (N * B + 1)), *b = malloc(sizeof(float) * (N * B + 1));
        float *adj = malloc(sizeof(float) * (N * B + 1)), *out = malloc(sizeof(float) * (N * B + 1));
        float *ha = malloc(sizeof(float) * (W - 1) * B), *hb = malloc(sizeof(float) * (W - 1) * B);
        /* exactly what host_sdft.py allocates, so a sizing mistake there shows here */
        double *lw = malloc(sizeof(double) * (2 * (N + W - 1) + 4 * K));
        double *gw = malloc(sizeof(double) * (2 * (N + W - 1) + 6 * K + chunk + W));
        for (long i = 0; i < N * B; i++) { a[i] = (float)(i % 7) - 3.0f; b[i] = (float)(i % 5); adj[i] = 1.0f; }
        for (long i = 0; i < (W - 1) * B; i++) { ha[i] = 0.5f; hb[i] = -0.5f; }
        dgen_host_sdft_loss(ha, a, hb, b, out, N, B, W, re, im, lw);
        dgen_host_sdft_grad(adj, a, b, out, N, B, W, re, im, gw);
        free(a); free(b); free(adj); free(out); free(ha); free(hb); free(lw); free(gw);
    }
    free(re); free(im);
    printf("ok\n");
    return 0;
}
"""


def test_source_is_warning_free_and_sanitizer_clean(tmp_path):
    cc.build(host_sdft.SOURCE, tmp_path / "s.so", host_sdft.flags(), extra=["-Wall", "-Wextra", "-Werror"])
    sanitize = ["-O0", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    exe = tmp_path / "harness"
    cc.build(host_sdft.SOURCE + HARNESS, exe, host_sdft.flags(), extra=sanitize, shared=False)
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    report = run.stdout + run.stderr
    assert run.returncode == 0 and "runtime error" not in report and "Sanitizer" not in report, report[-3000:]
    assert report.startswith("ok"), report[-3000:]
