"""The hop-1 spectral loss as running sums on the GPU (runtime/cuda_sdft.py) against the
NumPy reference (FFT per window, float64 here) and against central finite differences of
that reference, for the window sizes it serves, over calls that carry the window history."""

import numpy as np
import pytest
from _csupport import assert_close
from _cudasupport import requires_cuda

import dgen
from dgen import Op

pytestmark = requires_cuda


# WARPS = 1 makes every chunk MAX_CHUNK frames long (the B = 1024 case); the default splits
# these short signals into chunks of W frames (the B = 1 case)
@pytest.mark.parametrize("warps", [2048, 1])
@pytest.mark.parametrize("window", [4, 64, 128])
@pytest.mark.parametrize("instances", [1, 3])
def test_running_sum_loss_matches_fft_reference(window, instances, warps, monkeypatch):
    import cupy as cp

    from dgen.runtime import cuda_sdft
    from dgen.runtime.cuda_buffer import spectral_loss

    monkeypatch.setattr(cuda_sdft, "WARPS", warps)
    op = Op.spectral_loss(dgen.Graph().alloc(2 * window - 1), window, 1)
    rng = np.random.default_rng(window)
    mem_h = np.zeros((2 * window - 1, instances), np.float64)
    mem_d = cp.zeros((2 * window - 1, instances), np.float32)
    for frames in (700, 3, 1000):  # one chunk and several; history carried across calls
        a, b = (rng.standard_normal((frames, instances)).astype(np.float32) for _ in range(2))
        want = op.run(mem_h, 0, a.astype(np.float64), b.astype(np.float64))
        got = spectral_loss(cp, op, mem_d, cp.asarray(a), cp.asarray(b)).get()
        assert_close(got, want, rtol=2e-6, atol=1e-6 * np.abs(want).max(), what=f"loss, {frames} frames")


@pytest.mark.parametrize("warps", [2048, 1])
@pytest.mark.parametrize("window", [8, 64, 128])
def test_running_sum_gradient_matches_reference_and_finite_differences(window, warps, monkeypatch):
    import cupy as cp

    from dgen.runtime import cuda_sdft
    from dgen.runtime.cuda_buffer import spectral_loss_grad

    monkeypatch.setattr(cuda_sdft, "WARPS", warps)
    gop = Op.spectral_loss_grad(window, 1)
    op = Op.spectral_loss(dgen.Graph().alloc(2 * window - 1), window, 1)
    rng = np.random.default_rng(2)
    frames, instances = 1100, 2  # two or more chunks at any chunk size
    a, b, adj = (rng.standard_normal((frames, instances)) for _ in range(3))
    want = gop.ref(adj, a, b)
    got = spectral_loss_grad(cp, gop, None, *(cp.asarray(v.astype(np.float32)) for v in (adj, a, b))).get()
    assert_close(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max(), what="gradient vs FFT reference")
    for m in (0, window - 1, frames // 2, frames - 1):  # central differences of sum_n adj[n] loss[n]
        bumped = []
        for h in (1e-5, -1e-5):
            x = a.copy()
            x[m, 0] += h
            mem = np.zeros((2 * window - 1, instances))
            bumped.append(np.sum(adj[:, 0] * op.run(mem, 0, x, b)[:, 0]))
        fd = (bumped[0] - bumped[1]) / 2e-5
        assert abs(got[m, 0] - fd) <= 1e-3 * max(1.0, abs(fd)), (m, got[m, 0], fd)


def test_zero_frames_launch_nothing():
    import cupy as cp

    from dgen.runtime.cuda_buffer import spectral_loss, spectral_loss_grad

    W = 64
    op, gop = Op.spectral_loss(dgen.Graph().alloc(2 * W - 1), W, 1), Op.spectral_loss_grad(W, 1)
    mem = cp.ones((2 * W - 1, 3), np.float32)
    empty = cp.zeros((0, 3), np.float32)
    assert spectral_loss(cp, op, mem, empty, empty).shape == (0, 3)
    assert spectral_loss_grad(cp, gop, None, empty, empty, empty).shape == (0, 3)
    assert float(mem.sum().get()) == (2 * W - 1) * 3  # the history (and the hop phase) unchanged


@pytest.mark.parametrize("warps", [2048, 1])
def test_gradient_kernel_gives_the_loss_of_a_zero_history(warps, monkeypatch):
    """grad_and_loss: the gradient as `grad` gives it and, from the same sums, the loss as the
    loss kernel (and the float64 reference) give it after a zero window history."""
    import cupy as cp

    from dgen.runtime import cuda_sdft

    monkeypatch.setattr(cuda_sdft, "WARPS", warps)
    W, frames, instances = 64, 1100, 3
    rng = np.random.default_rng(5)
    a, b, adj = (rng.standard_normal((frames, instances)).astype(np.float32) for _ in range(3))
    da, db, dadj = (cp.asarray(v) for v in (a, b, adj))
    grad, loss = (v.get() for v in cuda_sdft.grad_and_loss(cp, W, da, db, dadj))
    want_grad = cuda_sdft.grad(cp, W, da, db, dadj).get()
    assert_close(grad, want_grad, rtol=1e-6, atol=1e-6 * np.abs(want_grad).max(), what="gradient")
    zeros = cp.zeros((W - 1, instances), cp.float32)
    want = cuda_sdft.loss(cp, W, zeros, da, zeros, db).get()
    assert_close(loss, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(), what="loss vs loss kernel")
    op = Op.spectral_loss(dgen.Graph().alloc(2 * W - 1), W, 1)
    ref = op.run(np.zeros((2 * W - 1, instances)), 0, a.astype(np.float64), b.astype(np.float64))
    assert_close(loss, ref, rtol=2e-6, atol=1e-6 * np.abs(ref).max(), what="loss vs reference")
