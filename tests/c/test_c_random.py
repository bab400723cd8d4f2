"""Random graphs (seeded): the C backend vs the float32 reference, one instance and several."""

import numpy as np
import pytest
from _csupport import CLOSE, assert_close, programs, requires_cc, stream

import dgen
from dgen import Op

pytestmark = requires_cc


def random_graph(rng, size=60, inputs=2):
    """A random patch: arithmetic, transcendentals, oscillators, filters, delays, feedback."""
    g = dgen.Graph()
    pool = [g.input(c) for c in range(inputs)]
    while len(g) < size:
        a, b = (pool[i] for i in rng.integers(len(pool), size=2))
        k = rng.integers(9)
        if k == 0:
            y = a * float(rng.uniform(-1, 1)) + b
        elif k == 1:
            y = g.n(Op.sin, a)
        elif k == 2:
            y = g.n(Op.phasor(g.alloc()), g.n(Op.abs, a) * 100.0, g.n(Op.gt, b, 2.5))
        elif k == 3:
            y = g.sos(a, 0.2, 0.3, 0.2, -0.5, 0.1)
        elif k == 4:
            y = g.n(Op.tanh, a - b)
        elif k == 5:
            y = g.delay(a, g.n(Op.abs, b) * 3.0, 16)
        elif k == 6:
            h, write = g.history()
            y = write(g.n(Op.tanh, a + 0.5 * h))
        elif k == 7:
            y = g.n(Op.gswitch, a, b, g.n(Op.floor, a * 3.0))
        else:
            y = g.n(Op.min, g.n(Op.max, a, -1.0), b)
        pool.append(y)
    for ch, y in enumerate(pool[-4:]):
        g.output(ch, y)
    return g


@pytest.mark.parametrize("instances", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_graphs_match_reference(seed, instances):
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    c, ref = programs(g, frame_count=600, instances=instances)
    x = rng.standard_normal((instances, 2, 1265)).astype(np.float32)
    x = x[0] if instances == 1 else x
    assert_close(stream(c, x), stream(ref, x), what=f"seed {seed}", **CLOSE)
