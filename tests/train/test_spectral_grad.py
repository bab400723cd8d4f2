"""The spectral loss gradient's overlap-add (ops/spectral.py) against the tap-by-tap sum it
replaces, and the whole gradient against central differences of the loss, for hops that
divide the window and hops that do not."""

import numpy as np
import pytest

import dgen
from dgen import Op
from dgen.ops.spectral import _overlap_add


def _tap_by_tap(out, per_window, ends):
    for i, e in enumerate(ends):
        for m in range(per_window.shape[-1]):
            out[e + m] += per_window[i, ..., m]


@pytest.mark.parametrize("hop", [1, 3, 4, 16, 40])
@pytest.mark.parametrize("shape", [(), (3,)])
def test_overlap_add_equals_tap_by_tap_sum(hop, shape):
    W, rng = 16, np.random.default_rng(hop)
    ends = np.arange(2, 200, hop)
    per_window = rng.standard_normal((len(ends), *shape, W))
    want, got = np.zeros((230, *shape)), np.zeros((230, *shape))
    _tap_by_tap(want, per_window, ends)
    _overlap_add(got, per_window, ends, hop)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window, hop", [(16, 1), (16, 3), (32, 8), (8, 20)])
def test_gradient_matches_central_differences(window, hop):
    rng = np.random.default_rng(window + hop)
    frames = 120
    a, b, adj = (rng.standard_normal(frames) for _ in range(3))
    op = Op.spectral_loss(dgen.Graph().alloc(2 * window - 1), window, hop)
    grad = Op.spectral_loss_grad(window, hop).ref(adj, a, b)
    for m in (0, 7, frames // 2, frames - 1):
        bumped = []
        for h in (1e-6, -1e-6):
            x = a.copy()
            x[m] += h
            bumped.append(np.sum(adj * op.ref(x, b)))
        fd = (bumped[0] - bumped[1]) / 2e-6
        assert abs(grad[m] - fd) <= 1e-6 * max(1.0, abs(fd)), (m, grad[m], fd)
