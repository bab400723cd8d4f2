"""Shared helpers for the CUDA tests: skip without CuPy or a GPU (saying which), build a CUDA
and a float32 reference program side by side, stated tolerances."""

from __future__ import annotations

import numpy as np
import pytest

import dgen
from dgen.errors import BackendUnavailable


def _have_cuda():
    try:
        from dgen.runtime.cuda_program import require_cupy

        require_cupy()
        return True, ""
    except BackendUnavailable as e:
        return False, str(e)


HAVE_CUDA, WHY = _have_cuda()
requires_cuda = [pytest.mark.cuda, pytest.mark.skipif(not HAVE_CUDA, reason=f"no CUDA: {WHY}")]

# Tolerances (CUDA float32 vs the reference interpreter in float32):
# - arithmetic, comparisons, floor/round/fmod, select, sqrt, memory: bit-exact (NVRTC with
#   --fmad=false keeps every rounding step; IEEE div and sqrt; denormals kept), so EXACT;
# - transcendentals: CUDA's math library is within 1-4 ulp of the correctly rounded result
#   (CUDA C Programming Guide, "Mathematical Functions"), NumPy's within 1-2: ULPS = 16;
# - recurrences amplify ulp-level differences of transcendentals inside them: CLOSE.
EXACT = dict(rtol=0.0, atol=float(np.finfo(np.float32).tiny))
ULPS = 16
CLOSE = dict(rtol=2e-4, atol=2e-5)


def programs(g, frame_count=1000, instances=1, **options):
    cu = dgen.compile(g, backend="cuda", frame_count=frame_count, instances=instances, **options)
    ref = dgen.compile(g, backend="reference", frame_count=frame_count, instances=instances, dtype=np.float32)
    return cu, ref
