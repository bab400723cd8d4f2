"""Shared helpers for the C backend tests: skip without a compiler, run C and the float32
reference side by side, compare with stated tolerances."""

from __future__ import annotations

import numpy as np
import pytest

import dgen
from dgen.errors import BackendUnavailable


def _have_cc():
    try:
        from dgen.runtime.cc import find_compiler

        find_compiler()
        return True, ""
    except BackendUnavailable as e:
        return False, str(e)


HAVE_CC, WHY = _have_cc()
requires_cc = pytest.mark.skipif(not HAVE_CC, reason=f"no C compiler: {WHY}")

# Frame counts that exercise a single frame, a partial vector, tile + 1 and several tiles.
FRAME_CHUNKS = (1, 7, 257, 1000)

# Tolerances (C float32 vs the reference interpreter in float32):
# - arithmetic, comparisons, floor/round, select, memory: bit-exact (-ffp-contract=off keeps
#   every rounding step of the reference), so EXACT;
# - transcendentals: libmvec / libm vs NumPy's float32 functions, a few ulp each, so ULPS;
# - recurrences amplify ulp-level differences of transcendentals inside them: CLOSE.
EXACT = dict(rtol=0.0, atol=0.0)
ULPS = 8
CLOSE = dict(rtol=2e-4, atol=2e-5)


def programs(g, frame_count=1000, instances=1, **options):
    c = dgen.compile(g, backend="c", frame_count=frame_count, instances=instances, **options)
    ref = dgen.compile(g, backend="reference", frame_count=frame_count, instances=instances, dtype=np.float32)
    return c, ref


def stream(prog, inputs=None, chunks=FRAME_CHUNKS, instances=1):
    """Run `prog` chunk by chunk (state carried over); outputs joined along frames."""
    outs, at = [], 0
    for n in chunks:
        x = None
        if inputs is not None:
            x = inputs[..., at : at + n]
        else:
            x = None
        outs.append(np.asarray(prog.run(x, frames=n)))
        at += n
    return np.concatenate(outs, axis=-1)


def assert_ulps(actual, expected, ulps=ULPS, what=""):
    """|actual - expected| <= ulps * spacing(expected), NaN where NaN, same infinities."""
    a, e = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert a.shape == e.shape, (a.shape, e.shape)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    assert np.array_equal(nan_a, nan_e), f"{what}: NaN at different places ({np.argwhere(nan_a != nan_e)[:5]})"
    fin = ~nan_e & np.isfinite(e)
    assert np.array_equal(a[~nan_e & ~fin], e[~nan_e & ~fin]), f"{what}: infinities differ"
    tol = ulps * np.spacing(np.abs(e[fin])) + np.float32(1e-37)  # denormals are flushed in C
    err = np.abs(a[fin].astype(np.float64) - e[fin].astype(np.float64))
    bad = err > tol
    if bad.any():
        k = np.argmax(err / tol)
        raise AssertionError(
            f"{what}: {bad.sum()} values beyond {ulps} ulp; worst C={a[fin][k]!r} reference={e[fin][k]!r}"
        )


def assert_close(actual, expected, rtol, atol, what=""):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64),
        np.asarray(expected, np.float64),
        rtol=rtol,
        atol=atol,
        equal_nan=True,
        err_msg=what,
    )
