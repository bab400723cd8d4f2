"""Checks that the peer benchmarks compute the signals they claim (pytest).

Faust tests skip when faust is not installed; torch tests skip without torch/torchlpc.
The phasors accumulate in float32 (s := wrap01(s + f/sr)), so against the float64 closed form
the phase drifts by ~1e-4 over 4096 frames: the closed-form checks use atol 5e-4, and the
float32-recurrence checks (same arithmetic as the generated C) use atol 1e-5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faust_bench as fb  # noqa: E402

SR = 44100
N = 4096
needs_faust = pytest.mark.skipif(not fb.faust_available(), reason="faust not installed (apt-get install -y faust)")


def phase_closed(f: float, frames: int = N) -> np.ndarray:
    return np.mod(np.arange(frames) * f / SR, 1.0)


def phase_f32(f: float, frames: int = N) -> np.ndarray:
    """The float32 phasor exactly as Faust generates it: s := inc + (s - floor(inc + s))."""
    f32 = np.float32
    inc = f32(f) / f32(SR)
    s = f32(0.0)
    out = np.empty(frames, np.float32)
    for i in range(frames):
        out[i] = s
        s = f32(inc + f32(s - np.floor(f32(inc + s))))
    return out


def sin2pi_f32(p: np.ndarray) -> np.ndarray:
    return np.sin(np.float32(2 * np.pi) * p.astype(np.float32)).astype(np.float64)


@needs_faust
def test_phasor_sin_closed_form():
    y = fb.faust_render("phasor_sin", N)
    assert y.dtype == np.float32 and y.shape == (N,)
    assert y[0] == 0.0
    np.testing.assert_allclose(y, np.sin(2 * np.pi * phase_closed(440)), atol=5e-4, rtol=0)
    np.testing.assert_allclose(y, sin2pi_f32(phase_f32(440)), atol=1e-5, rtol=0)


@needs_faust
def test_sos_matches_lfilter():
    signal = pytest.importorskip("scipy.signal")
    b, a = [0.2, 0.4, 0.2], [1.0, -0.5, 0.25]
    y = fb.faust_render("sos", N)
    np.testing.assert_allclose(y, signal.lfilter(b, a, np.sin(2 * np.pi * phase_closed(220))), atol=5e-4, rtol=0)
    np.testing.assert_allclose(y, signal.lfilter(b, a, sin2pi_f32(phase_f32(220))), atol=1e-5, rtol=0)


@needs_faust
def test_sine_bank():
    y = fb.faust_render("sine_bank", N)
    ref = sum(np.sin(2 * np.pi * phase_closed(110 * (k + 1))) for k in range(16)) / 16
    np.testing.assert_allclose(y, ref, atol=5e-4, rtol=0)


def karplus_ref(frames: int, p: int = 100) -> np.ndarray:
    n = np.arange(frames)
    # float32 phase: by frame 44100 the float32 phasor has drifted ~1e-3 from the closed form
    x = sin2pi_f32(phase_f32(440, frames)) * ((n % 44100) < 100)
    y = np.zeros(frames + p + 1)  # p+1 leading zeros: y[n-P], y[n-P-1] of n < P are 0
    for start in range(0, frames, p):  # y[n] needs y[n-P] only: P frames at a time
        i = np.arange(start, min(start + p, frames)) + p + 1
        y[i] = x[i - p - 1] + 0.996 * 0.5 * (y[i - p] + y[i - p - 1])
    return y[p + 1 :]


@needs_faust
def test_karplus_replucks():
    frames = 44100 + 1000  # past the second pluck
    y = fb.faust_render("karplus", frames)
    np.testing.assert_allclose(y, karplus_ref(frames), atol=1e-5, rtol=0)


@needs_faust
def test_fm_biquad():
    signal = pytest.importorskip("scipy.signal")
    mod = np.sin(2 * np.pi * phase_closed(110))
    inc = (220 + 2 * 110 * mod) / SR
    car = np.sin(2 * np.pi * np.mod(np.concatenate([[0.0], np.cumsum(inc)[:-1]]), 1.0))
    w = 2 * np.pi * 1000 / SR
    c, alpha = np.cos(w), np.sin(w) / (2 * 0.707)
    a0 = 1 + alpha
    ref = signal.lfilter(np.array([(1 - c) / 2, 1 - c, (1 - c) / 2]) / a0, [1.0, -2 * c / a0, (1 - alpha) / a0], car)
    np.testing.assert_allclose(fb.faust_render("fm_biquad", N), ref, atol=5e-4, rtol=0)


@needs_faust
@pytest.mark.parametrize("patch", fb.PATCHES)
def test_vec_equals_scalar_and_bench_runs(patch):
    # odd frame count and block size: exercises the partial last block of both code paths
    np.testing.assert_allclose(
        fb.faust_render(patch, 1000, "vec", 64), fb.faust_render(patch, 1000, "scalar", 256), atol=1e-6, rtol=0
    )
    assert fb.faust_throughput(patch, "vec", block=64, seconds=0.02, instances=3) > 0


def test_torch_onepole_matches_lfilter_and_learns():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchlpc")
    signal = pytest.importorskip("scipy.signal")
    import torch_bench as tb

    x = tb._noise(2, 512, torch.device("cpu")).double()
    y = tb.onepole(x, torch.tensor([0.9, 0.3], dtype=torch.float64))
    for i, a in enumerate((0.9, 0.3)):
        np.testing.assert_allclose(y[i].numpy(), signal.lfilter([1 - a], [1, -a], x[i].numpy()), atol=1e-10)
    step, (a,) = tb.make_onepole_step(2, 512, "cpu", lr=0.5)
    losses = [step().item() for _ in range(5)]
    assert losses[-1] < losses[0] and bool((a > 0.5).all())  # moves toward 0.9
    assert tb.torch_onepole_step_ms(2, 256) > 0


def test_torch_seed_loop_equals_cumsum():
    torch = pytest.importorskip("torch")
    import torch_bench as tb

    torch.set_num_threads(1)

    def circ(d):  # phase difference modulo 1 (0.9999999 and 1e-15 are the same phase)
        return (d + 0.5) % 1.0 - 0.5

    f = torch.tensor([237.0, 300.0, 8.5], dtype=torch.float64)
    loop = tb.phasor_loop(f, 512).numpy()
    assert np.abs(circ(loop - tb.phasor_cumsum(f, 512).numpy())).max() < 1e-9
    assert np.abs(circ(loop[0] - phase_closed(237.0, 512))).max() < 1e-9
    grads = []
    for ph in (tb.phasor_loop, tb.phasor_cumsum):
        fr = torch.tensor([237.0, 250.0], dtype=torch.float64, requires_grad=True)
        lf = torch.tensor([8.5, 9.0], dtype=torch.float64, requires_grad=True)
        tb.seed_loss(fr, lf, 256, ph).backward()
        grads.append(torch.stack([fr.grad, lf.grad]).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    # the spectral loss is the dgen definition: the frame of n = W-1 is a plain rfft
    a, b = torch.randn(1, 64, dtype=torch.float64), torch.randn(1, 64, dtype=torch.float64)
    want = ((torch.fft.rfft(a[0]).abs() - torch.fft.rfft(b[0]).abs()) ** 2).sum()
    assert torch.allclose(tb.spectral_loss(a, b, 64)[0, 63], want)
    assert tb.torch_seed_step_ms_cumsum(1, 256) > 0


def test_torch_biquads_match_scipy_and_finite_differences():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchlpc")
    signal = pytest.importorskip("scipy.signal")
    import importlib.util

    import torch_bench as tb

    x = tb._noise(2, 512, torch.device("cpu")).double()
    fc, q = torch.tensor([800.0, 3000.0], dtype=torch.float64), torch.tensor([0.9, 2.0], dtype=torch.float64)
    b, a = tb.lowpass_coefficients(fc, q)
    peers = [tb.biquad_lpc] + ([tb.biquad_lfilter] if importlib.util.find_spec("torchaudio") else [])
    for biquad in peers:  # torchaudio has no build for every torch: checked where it is installed
        y = biquad(x, fc, q)
        for i in range(2):
            want = signal.lfilter(b[i].numpy(), a[i].numpy(), x[i].numpy())
            np.testing.assert_allclose(y[i].numpy(), want, atol=1e-9)
        f, qq = fc.clone().requires_grad_(), q.clone().requires_grad_()
        (biquad(x, f, qq) ** 2).sum().backward()
        for grad, bump in ((f.grad, (1e-3, 0.0)), (qq.grad, (0.0, 1e-6))):
            up = (biquad(x, fc + bump[0], q + bump[1]) ** 2).sum(dim=1)
            down = (biquad(x, fc - bump[0], q - bump[1]) ** 2).sum(dim=1)
            np.testing.assert_allclose(grad.numpy(), ((up - down) / (2 * max(bump))).numpy(), rtol=1e-5)
    step, _ = tb.make_biquad_step(2, 512, "cpu", lr=1.0)
    losses = [step().item() for _ in range(3)]
    assert losses[-1] < losses[0]
