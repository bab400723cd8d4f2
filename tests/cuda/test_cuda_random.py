"""Random graphs (seeded, the C tests' generator): the CUDA backend vs the float32 reference."""

import numpy as np
import pytest
from _csupport import assert_close, stream
from _cudasupport import CLOSE, programs, requires_cuda
from test_c_random import random_graph

pytestmark = requires_cuda


@pytest.mark.parametrize("instances", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_random_graphs_match_reference(seed, instances):
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    cu, ref = programs(g, frame_count=600, instances=instances)
    x = rng.standard_normal((instances, 2, 1265)).astype(np.float32)
    x = x[0] if instances == 1 else x
    assert_close(stream(cu, x), stream(ref, x), what=f"seed {seed}", **CLOSE)
