"""Every gradient vs central finite differences of the float64 reference (ops.md, Gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dgen
from dgen import Op
from dgen.ops import REGISTRY, Pure

from .gradcheck import check


def _sine(g, freq=440.0):
    return g.n(Op.sin, g.n(Op.phasor(g.alloc()), freq, 0.0) * (2 * math.pi))


def _finish(g, params, y, target=0.25):
    loss = g.n(Op.mse, y, target)
    g.n(Op.output(0), loss)
    return g, params, loss


# Inputs that keep each op smooth and inside its domain: (low, high) of the operand values.
DOMAINS = {
    "asin": (-0.8, 0.8),
    "acos": (-0.8, 0.8),
    "log": (0.2, 2.0),
    "log10": (0.2, 2.0),
    "sqrt": (0.2, 2.0),
    "tan": (-1.0, 1.0),
    "pow": (0.3, 2.0),
    "div": (0.3, 2.0),
}
OPERAND_DOMAINS = {"mod": {0: (2.5, 3.5), 1: (1.8, 2.2)}}  # keeps trunc(a/b) = 1: fmod smooth
NON_SMOOTH = {"sign", "floor", "ceil", "round", "gt", "lt", "gte", "lte", "eq"}
PURE_OPS = sorted(n for n, c in REGISTRY.items() if issubclass(c, Pure) and n not in ("seq", "selector"))


@pytest.mark.parametrize("name", PURE_OPS)
def test_pure_op_gradient(name):
    """Each input of each pure op gets a parameter; its gradient matches finite differences."""
    op = getattr(Op, name)
    arity = op.arity if isinstance(op.arity, int) else op.arity[0]
    default = DOMAINS.get(name, (-1.3, 1.7))

    def build():
        g = dgen.Graph()
        params, operands = [], []
        for k in range(arity):
            p = dgen.Parameter(g, 0.37 + 0.11 * k, name=f"p{k}")
            lo, hi = OPERAND_DOMAINS.get(name, {}).get(k, default)
            # operands differ at every frame (no ties at frame 0, where every sine is 0)
            wobble = lo + (hi - lo) * (0.5 + 0.1 * k + 0.35 * _sine(g, 300.0 + 170.0 * k))
            params.append(p)
            operands.append(wobble * p.node() / (0.37 + 0.11 * k))
        if name == "gswitch":  # the condition crosses zero, the branches are smooth
            operands[0] = operands[0] - 0.25
        return _finish(g, params, g.n(op, *operands))

    grads = check(build, frames=96)
    if name in NON_SMOOTH:
        assert all(v[0] == 0 for v in grads.values())


def test_phasor_frequency():
    def build():
        g = dgen.Graph()
        f = dgen.Parameter(g, 237.0, "f")
        return _finish(g, [f], _sine(g, f.node()))

    check(build, frames=512, eps=1e-5)


def test_one_pole_feedback_coefficient():
    def build():
        g = dgen.Graph()
        a = dgen.Parameter(g, 0.8, "a")
        prev, write = g.history()
        y = write((1.0 - a.node()) * _sine(g) + a.node() * prev)
        return _finish(g, [a], y)

    check(build, frames=512)


def test_sos_all_five_coefficients():
    values = dict(b0=0.2, b1=0.35, b2=0.1, a1=-0.6, a2=0.3)

    def build():
        g = dgen.Graph()
        ps = {k: dgen.Parameter(g, v, k) for k, v in values.items()}
        y = g.sos(_sine(g, 900.0), *(ps[k].node() for k in values))
        return _finish(g, list(ps.values()), y)

    check(build, frames=1024)


@pytest.mark.parametrize("mode", [0, 1, 2, 3, 4, 5])
def test_biquad_cutoff_resonance_gain(mode):
    def build():
        g = dgen.Graph()
        c, q, k = dgen.Parameter(g, 1200.0, "cutoff"), dgen.Parameter(g, 0.9, "q"), dgen.Parameter(g, 0.8, "gain")
        y = g.biquad(_sine(g, 700.0) + _sine(g, 2300.0), c.node(), q.node(), k.node(), mode)
        return _finish(g, [c, q, k], y)

    check(build, frames=1024, eps=1e-5, rtol=2e-4)


def test_fractional_delay_time_and_feedback_comb_gain():
    def build():
        g = dgen.Graph()
        d, fb = dgen.Parameter(g, 5.3, "delay"), dgen.Parameter(g, 0.6, "feedback")
        prev, write = g.history()
        y = _sine(g, 500.0) + fb.node() * prev
        write(g.delay(y, d.node(), max_delay=32))
        return _finish(g, [d, fb], y)

    check(build, frames=400)


def test_compressor_threshold_and_ratio():
    def build():
        g = dgen.Graph()
        th, ra = dgen.Parameter(g, -12.0, "threshold"), dgen.Parameter(g, 4.0, "ratio")
        x = _sine(g, 220.0) * (0.2 + 0.8 * g.n(Op.phasor(g.alloc()), 30.0, 0.0))
        y = g.compressor(x, ra.node(), th.node(), 6.0, 0.002, 0.05)
        return _finish(g, [th, ra], y, target=0.0)

    check(build, frames=1024, eps=1e-5, rtol=1e-3)


def test_latch_and_accum():
    def build():
        g = dgen.Graph()
        v, inc = dgen.Parameter(g, 0.3, "value"), dgen.Parameter(g, 0.01, "incr")
        trig = g.n(Op.gt, _sine(g, 2000.0), 0.5)
        held = g.n(Op.latch(g.alloc()), _sine(g, 700.0) * v.node(), trig)
        ramp = g.n(Op.accum(g.alloc()), inc.node(), 0.0)
        return _finish(g, [v, inc], held + ramp)

    check(build, frames=300)


def test_memory_read_write():
    def build():
        g = dgen.Graph()
        s = dgen.Parameter(g, 0.7, "scale")
        buf = g.alloc(16)
        pos = g.n(Op.accum(g.alloc()), 1.0, 0.0, 0.0, 16.0)
        w = g.n(Op.memory_write(buf), pos, _sine(g, 900.0) * s.node())
        old = g.seq(w, g.n(Op.memory_read(buf), pos - 5.0))
        same = g.seq(w, g.n(Op.memory_read(buf), pos))
        return _finish(g, [s], old * same + old)

    check(build, frames=200)


@pytest.mark.parametrize("window", [4, 16, 64])
def test_spectral_loss_and_mse_both_signals(window):
    def build():
        g = dgen.Graph()
        # frequencies without symmetric windows: |A_k| = 0 exactly is a kink finite
        # differences would straddle
        fa, fb = dgen.Parameter(g, 411.3, "fa"), dgen.Parameter(g, 353.7, "fb")
        a, b = _sine(g, fa.node()), _sine(g, fb.node()) * 0.7
        loss = g.spectral_loss(a, b, window) + 0.5 * g.n(Op.mse, a, b)
        g.n(Op.output(0), loss)
        return g, [fa, fb], loss

    check(build, frames=256, eps=1e-5)


def test_spectral_loss_with_hop():
    def build():
        g = dgen.Graph()
        fa = dgen.Parameter(g, 410.0, "fa")
        loss = g.multi_spectral_loss(_sine(g, fa.node()), _sine(g, 350.0), windows=(16, 64))
        g.n(Op.output(0), loss)
        return g, [fa], loss

    check(build, frames=256, eps=1e-5)


def test_gswitch_and_selector_route_to_the_chosen_input():
    def build():
        g = dgen.Graph()
        a, b, c = (dgen.Parameter(g, v, n) for v, n in ((0.5, "a"), (-0.3, "b"), (0.9, "c")))
        idx = 1.5 + 1.4 * _sine(g, 300.0)  # sweeps 0.1 .. 2.9: all three options
        y = g.selector(idx, a.node() * _sine(g, 500.0), b.node(), c.node() * 2.0)
        z = g.n(Op.gswitch, _sine(g, 700.0), y, a.node() * 3.0)
        return _finish(g, [a, b, c], z)

    check(build, frames=300)


def test_gradient_per_instance_matches_single_runs():
    """instances=B trains B copies: each instance's gradient equals its own single run."""
    values = np.array([0.2, 0.5, 0.8])

    def build(v):
        g = dgen.Graph()
        a = dgen.Parameter(g, v, "a")
        prev, write = g.history()
        y = write((1.0 - a.node()) * _sine(g) + a.node() * prev)
        loss = g.n(Op.mse, y, 0.1)
        g.n(Op.output(0), loss)
        return g, a, loss

    g, a, loss = build(values)
    prog = dgen.compile(g, backend="reference", frame_count=200, backwards=True, instances=3)
    _, grads = prog.forward_backward(loss)
    for k, v in enumerate(values):
        g1, a1, l1 = build(float(v))
        _, single = dgen.compile(g1, backend="reference", frame_count=200, backwards=True).forward_backward(l1)
        assert grads[a][k] == pytest.approx(single[a1][0], rel=1e-12)
