"""Every pure op on the CUDA backend vs the float32 reference, driven by the op registry (the
C tests' graphs): each op in a vector kernel, in a sequential kernel (inside a feedback loop)
and as a per-call uniform, with one instance and with three, over odd frame counts."""

import numpy as np
import pytest
from _csupport import FRAME_CHUNKS, assert_close, assert_ulps, stream
from _cudasupport import ULPS, programs, requires_cuda
from test_c_ops import EXACT_OPS, EXACT_TOL, build, signals

pytestmark = requires_cuda
N = sum(FRAME_CHUNKS)


def compare(out, ref_out, names, what):
    for ch, name in enumerate(names):
        if name in EXACT_OPS:
            assert_close(out[..., ch, :], ref_out[..., ch, :], what=f"{name} {what}", **EXACT_TOL)
        else:
            assert_ulps(out[..., ch, :], ref_out[..., ch, :], ulps=ULPS, what=f"{name} {what}")


@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("context", ["vector", "sequential", "uniform"])
def test_pure_ops_match_reference(context, instances):
    g, names = build(context)
    cu, ref = programs(g, frame_count=N, instances=instances)
    rng = np.random.default_rng(7)
    C = g.input_channels()
    x = None
    if C:
        x = signals(rng, C * instances, N).reshape(instances, C, N)
        x = x[0] if instances == 1 else x
    compare(stream(cu, x), stream(ref, x), names, f"({context}, {instances} instance(s))")
