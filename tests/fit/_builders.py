"""Patches for fit_many tests: top-level functions, so process workers can unpickle them."""

import dgen
from dgen import Op

SAMPLE_RATE = 8000


def saw_onepole(g, a, excitation_hz=110.0):
    """A sawtooth through y[n] = (1 - a) x[n] + a y[n-1]."""
    x = g.n(Op.phasor(g.alloc()), excitation_hz, 0.0) - 0.5
    c = g.alloc()
    y = (1 - a) * x + a * g.n(Op.history_read(c))
    g.n(Op.history_write(c), y)
    return y


def build_onepole(g, target):
    """fit_many's convention: (parameters, per-frame loss node)."""
    a = dgen.Parameter(g, 0.5, name="a", min=0.0, max=0.99)
    return [a], g.n(Op.mse, saw_onepole(g, a.node()), target)


def render_onepole(a, frames=512):
    g = dgen.Graph(sample_rate=SAMPLE_RATE)
    g.output(0, saw_onepole(g, a))
    return dgen.compile(g, backend="reference", frame_count=frames).run()[0]
