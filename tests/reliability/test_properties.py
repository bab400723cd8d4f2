"""Property tests (hypothesis) on random graphs: backends agree, streaming is invisible,
gradients are exact.

Graphs of up to 50 random steps (each one op or one block: stateless ops, phasor, accum,
latch, nonlinear feedback through history cells, `g.delay`, `g.sos`, `g.biquad`) over two
input channels. Every value stays bounded (a per-node bound is tracked and values are scaled
by powers of two, which is exact), and float32 differences are never amplified by a
discontinuity: C and the float32 reference are bit-exact for arithmetic (no FMA
contraction) but differ by a few ulp in transcendentals, so ops that jump (floor, sign,
mod, comparisons, gswitch/latch/selector conditions, phasor/accum inputs and resets) only
take "exact" operands (no transcendental upstream).

Properties and tolerances (docs/reliability.md):
1. C == the float32 reference within |c - r| <= ATOL * scale + RTOL * |r|, where scale =
   max(1, max|r|) of that output;
2. streaming: random chunk sizes give exactly (bit for bit) the one-call result, on C,
   the float32 and the float64 reference;
3. gradients (float64 reference, smooth graphs, 1-3 parameters) == central finite
   differences within GRAD_RTOL.

Profiles: the default "dgen-ci" runs few examples, derandomized (the same ones every run;
well under 2 minutes); DGEN_HYPOTHESIS=long runs "dgen-long", thousands of random ones.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pytest
from _support import requires_cc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import dgen
from dgen import Op

LONG = os.environ.get("DGEN_HYPOTHESIS", "") == "long"
_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile("dgen-ci", derandomize=True, database=None, **_common)
settings.register_profile("dgen-long", **_common)
PROFILE = settings.get_profile("dgen-long" if LONG else "dgen-ci")


def examples(ci: int, long: int):
    return settings(PROFILE, max_examples=long if LONG else ci)


ATOL, RTOL = 3e-5, 3e-5  # C vs float32 reference, relative to the output's scale (observed: <= 3.7e-6)
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-8  # vs central FD (h = 1e-6); GRAD_ATOL is relative to max(1, loss)
MAX_STEPS = 50
SR = 44100.0


@dataclass
class V:
    node: object
    bound: float  # |value| <= bound on every frame
    exact: bool  # no transcendental upstream: bit-exact between C and the float32 reference


def _rbj_l1(cutoff, q, gain, mode, sr=SR, n=4000):
    """L1 norm of the biquad's impulse response (a bound on its gain), float64."""
    w = 2 * math.pi * cutoff / sr
    alpha, c = math.sin(w) / (2 * q), math.cos(w)
    table = [
        ((1 - c) / 2, 1 - c, (1 - c) / 2),
        ((1 + c) / 2, -(1 + c), (1 + c) / 2),
        (alpha, 0, -alpha),
        (math.sin(w) / 2, 0, -math.sin(w) / 2),
        (1, -2 * c, 1),
        (1 - alpha, -2 * c, 1 + alpha),
    ]
    a0 = 1 + alpha
    b = [v * gain / a0 for v in table[mode]]
    return _l1(b, (-2 * c / a0, (1 - alpha) / a0), n)


def _l1(b, a, n=4000):
    x1 = x2 = y1 = y2 = 0.0
    total = 0.0
    for i in range(n):
        x = 1.0 if i == 0 else 0.0
        y = b[0] * x + b[1] * x1 + b[2] * x2 - a[0] * y1 - a[1] * y2
        x2, x1, y2, y1 = x1, x, y1, y
        total += abs(y)
    return total


def f32(v: float) -> float:
    return float(np.float32(v))


class Builder:
    """Draws one random graph step by step from hypothesis `data`."""

    SMOOTH_KINDS = (
        "affine",
        "add",
        "sub",
        "mul",
        "sin",
        "cos",
        "tanh",
        "exp",
        "soft_div",
        "log1p2",
        "sqrt1p2",
        "feedback",
        "sos",
        "delay",
        "biquad",
        "sine_osc",
        "mix",
    )
    KINDS = SMOOTH_KINDS + (
        "min",
        "max",
        "div",
        "abs",
        "floor",
        "cmp",
        "sign",
        "mod",
        "gswitch",
        "selector",
        "phasor",
        "accum",
        "latch",
        "log",
        "sqrt",
        "pow",
    )

    def __init__(self, data, smooth=False, params=()):
        self.data, self.smooth = data, smooth
        self.g = params[0].graph if params else dgen.Graph(sample_rate=SR)
        g = self.g
        self.pool = [V(g.input(0), 1.0, True), V(g.input(1), 1.0, True)]
        self.pool += [V(p.node(), 1.0, False) for p in params]  # parameters stay in [-1, 1]
        self.params = list(params)
        self.biquads = 0

    # ---------------------------------------------------------------- drawing
    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def const(self, lo, hi):
        return f32(self.draw(st.floats(lo, hi, allow_nan=False)))

    def pick(self, exact=False) -> V:
        cands = [v for v in self.pool if v.exact] if exact else self.pool
        recent = cands[-8:]
        if self.draw(st.booleans()):
            return recent[self.draw(st.integers(0, len(recent) - 1))]
        return cands[self.draw(st.integers(0, len(cands) - 1))]

    def add(self, v: V) -> V:
        if v.bound > 8.0:  # scale by a power of two: exact, keeps every value bounded
            k = math.ceil(math.log2(v.bound / 8.0))
            v = V(v.node * (2.0**-k), v.bound * 2.0**-k, v.exact)
        self.pool.append(v)
        return v

    # ---------------------------------------------------------------- building
    def build(self, steps: int):
        for _ in range(steps):
            kinds = self.SMOOTH_KINDS if self.smooth else self.KINDS
            kind = self.draw(st.sampled_from(kinds))
            if kind == "biquad" and self.biquads >= 2:
                kind = "sos"
            self.add(getattr(self, "op_" + kind)())
        return self.g

    def outputs(self, count):
        g = self.g
        outs = [self.pool[-1]] + [self.pick() for _ in range(count - 1)]
        for ch, v in enumerate(outs):
            g.output(ch, v.node)
        return outs

    # ---------------------------------------------------------------- stateless
    def op_affine(self):
        a = self.pick()
        c1, c2 = self.const(-2, 2), self.const(-1, 1)
        return V(a.node * c1 + c2, a.bound * abs(c1) + abs(c2), a.exact)

    def _two(self, op, bound):
        a, b = self.pick(), self.pick()
        return V(self.g.n(op, a.node, b.node), bound(a.bound, b.bound), a.exact and b.exact)

    def op_add(self):
        return self._two(Op.add, lambda x, y: x + y)

    def op_sub(self):
        return self._two(Op.sub, lambda x, y: x + y)

    def op_mul(self):
        return self._two(Op.mul, lambda x, y: x * y)

    def op_min(self):
        return self._two(Op.min, max)

    def op_max(self):
        return self._two(Op.max, max)

    def op_div(self):
        a, b = self.pick(), self.pick()
        return V(a.node / (self.g.n(Op.abs, b.node) + 1.0), a.bound, a.exact and b.exact)

    def op_soft_div(self):
        a, b = self.pick(), self.pick()
        return V(a.node / (b.node * b.node + 1.0), a.bound, a.exact and b.exact)

    def op_abs(self):
        a = self.pick()
        return V(self.g.n(Op.abs, a.node), a.bound, a.exact)

    def op_mix(self):
        a, b, t = self.pick(), self.pick(), self.pick()
        bt = t.bound
        return V(
            self.g.n(Op.mix, a.node, b.node, t.node),
            (a.bound + b.bound) * (1 + 2 * bt),
            a.exact and b.exact and t.exact,
        )

    def _unary(self, op, bound, arg=None):
        a = arg or self.pick()
        return V(self.g.n(op, a.node), bound(a.bound), False)

    def op_sin(self):
        return self._unary(Op.sin, lambda b: 1.0)

    def op_cos(self):
        return self._unary(Op.cos, lambda b: 1.0)

    def op_tanh(self):
        return self._unary(Op.tanh, lambda b: 1.0)

    def op_exp(self):
        a = self.pick()
        k = 2.0 ** -max(0, math.ceil(math.log2(max(a.bound, 1.0) / 3.0)))  # |argument| <= 3
        return V(self.g.n(Op.exp, a.node * k), math.exp(3.0), False)

    def op_log(self):
        a = self.pick()
        return V(self.g.n(Op.log, self.g.n(Op.abs, a.node) + 1.0), math.log(a.bound + 1), False)

    def op_log1p2(self):
        a = self.pick()
        return V(self.g.n(Op.log, a.node * a.node + 1.0), math.log(a.bound**2 + 1), False)

    def op_sqrt(self):
        a = self.pick()
        return V(self.g.n(Op.sqrt, self.g.n(Op.abs, a.node)), math.sqrt(a.bound), False)

    def op_sqrt1p2(self):
        a = self.pick()
        return V(self.g.n(Op.sqrt, a.node * a.node + 1.0), math.sqrt(a.bound**2 + 1), False)

    def op_pow(self):
        a = self.pick()
        e = self.const(0.5, 2.0)
        return V(self.g.n(Op.pow, self.g.n(Op.abs, a.node) + 0.5, e), (a.bound + 0.5) ** e, False)

    # discontinuous ops: exact operands only
    def op_floor(self):
        a = self.pick(exact=True)
        return V(self.g.n(Op.floor, a.node * 2.0), 2 * a.bound + 1, True)

    def op_cmp(self):
        a, b = self.pick(exact=True), self.pick(exact=True)
        op = self.draw(st.sampled_from([Op.gt, Op.lt, Op.gte, Op.lte]))
        return V(self.g.n(op, a.node, b.node), 1.0, True)

    def op_sign(self):
        a = self.pick(exact=True)
        return V(self.g.n(Op.sign, a.node), 1.0, True)

    def op_mod(self):
        a = self.pick(exact=True)
        m = self.const(0.5, 3.0)
        return V(self.g.n(Op.mod, a.node, m), m, True)

    def op_gswitch(self):
        c, a, b = self.pick(exact=True), self.pick(), self.pick()
        return V(self.g.n(Op.gswitch, c.node, a.node, b.node), max(a.bound, b.bound), a.exact and b.exact)

    def op_selector(self):
        i = self.pick(exact=True)
        opts = [self.pick() for _ in range(self.draw(st.integers(1, 3)))]
        index = self.g.n(Op.floor, i.node * 2.0)
        return V(
            self.g.selector(index, *(o.node for o in opts)), max(o.bound for o in opts), all(o.exact for o in opts)
        )

    # ---------------------------------------------------------------- state
    def _reset(self):
        if self.draw(st.booleans()):
            return self.g.constant(0.0)
        c = self.pick(exact=True)
        return self.g.n(Op.gt, c.node, self.const(0.5, 1.0))

    def op_phasor(self):
        a = self.pick(exact=True)
        base, k = self.const(0.0, 2000.0), 2.0 ** self.draw(st.integers(0, 9))
        freq = self.g.n(Op.abs, a.node) * k + base
        return V(self.g.n(Op.phasor(self.g.alloc()), freq, self._reset()), 1.0, True)

    def op_accum(self):
        a = self.pick(exact=True)
        lo = self.const(-2.0, 0.0)
        hi = f32(lo + self.const(0.25, 3.0))
        incr = a.node * (2.0 ** -self.draw(st.integers(2, 8)))
        return V(self.g.n(Op.accum(self.g.alloc()), incr, self._reset(), lo, hi), max(abs(lo), abs(hi)), True)

    def op_latch(self):
        v, t = self.pick(), self.pick(exact=True)
        return V(self.g.n(Op.latch(self.g.alloc()), v.node, self.g.n(Op.gt, t.node, 0.0)), v.bound, v.exact)

    def op_sine_osc(self):
        """sin(2 pi phasor): smooth in its frequency (a parameter in smooth graphs)."""
        g = self.g
        if self.params and self.draw(st.booleans()):
            freq = self.const(100.0, 1000.0) + self.params[
                self.draw(st.integers(0, len(self.params) - 1))
            ].node() * self.const(10.0, 200.0)
        else:
            freq = g.constant(self.const(20.0, 3000.0))
        ph = g.n(Op.phasor(g.alloc()), freq, 0.0)
        return V(g.n(Op.sin, ph * (2 * math.pi)), 1.0, False)

    def op_feedback(self):
        """y = a * h(y[n-1]) + (1 - |a|) * f,  |a| <= 0.9, h in {id, tanh, sin}: bounded by |f|."""
        g = self.g
        f = self.pick()
        h_kind = self.draw(st.sampled_from(["id", "tanh", "sin"]))
        prev, close = g.history()
        h = prev if h_kind == "id" else g.n(Op.tanh if h_kind == "tanh" else Op.sin, prev)
        if self.params and self.draw(st.booleans()):
            p = self.params[self.draw(st.integers(0, len(self.params) - 1))]
            a = g.n(Op.tanh, p.node()) * 0.9  # |a| < 0.9, smooth in p
            y = a * h + (1.0 - g.n(Op.abs, a)) * f.node if not self.smooth else a * h + 0.1 * f.node
            bound = f.bound if not self.smooth else f.bound
            return V(close(y), bound, False)
        a = self.const(-0.9, 0.9)
        y = close(a * h + f32(1.0 - abs(a)) * f.node)
        return V(y, f.bound, f.exact and h_kind == "id")

    def op_delay(self):
        g = self.g
        x = self.pick()
        max_delay = float(self.draw(st.integers(1, 64)))
        if self.params and self.draw(st.booleans()):
            p = self.params[self.draw(st.integers(0, len(self.params) - 1))]
            # linear interpolation has kinks at whole delays, where finite differences see the
            # mean of both slopes: keep d off them for the values hypothesis likes (p = 0, ...)
            d = (g.n(Op.tanh, p.node()) + 1.0) * (0.45 * max_delay) + 0.0137
            exact = False
        elif not self.smooth and self.draw(st.booleans()):
            s = self.pick()  # a varying delay time: the output is continuous in it
            d = (g.n(Op.tanh, s.node) + 1.0) * (max_delay / 2)
            exact = False
        else:
            d = self.const(0.0, max_delay)
            exact = x.exact
        return V(g.delay(x.node, d, max_delay), x.bound, exact)

    def op_sos(self):
        x = self.pick()
        r, theta = self.const(0.0, 0.95), self.const(0.0, math.pi)
        a1, a2 = f32(-2 * r * math.cos(theta)), f32(r * r)
        b = [self.const(-1.0, 1.0) for _ in range(3)]
        return V(self.g.sos(x.node, *b, a1, a2), x.bound * _l1(b, (a1, a2)) * 1.01 + 1e-6, x.exact)

    def op_biquad(self):
        self.biquads += 1
        x = self.pick()
        q, gain, mode = self.const(0.5, 2.0), self.const(0.5, 1.0), self.draw(st.integers(0, 5))
        cutoff = self.const(300.0, 10000.0)
        if self.params and self.draw(st.booleans()):
            p = self.params[self.draw(st.integers(0, len(self.params) - 1))]
            cut = cutoff + p.node() * 200.0
            cutoff += 200.0
        else:
            cut = cutoff
        bound = x.bound * _rbj_l1(cutoff, q, gain, mode) * 1.5
        return V(self.g.biquad(x.node, cut, q, gain, float(mode)), bound, False)


def input_signals(data, frames, instances=1):
    seed = data.draw(st.integers(0, 2**32 - 1), label="input seed")
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    x = np.stack(
        [
            np.stack(
                [rng.uniform(-1, 1, frames), np.sin(2 * np.pi * rng.uniform(50, 2000) / SR * t + rng.uniform(0, 6))]
            )
            for _ in range(instances)
        ]
    ).astype(np.float32)
    return x[0] if instances == 1 else x


def chunks(data, frames):
    sizes, left = [], frames
    while left > 0:
        n = data.draw(st.integers(1, min(left, 300)), label="chunk")
        sizes.append(n)
        left -= n
    return sizes


def run_chunked(prog, x, sizes):
    out, at = [], 0
    for n in sizes:
        out.append(prog.run(x[..., at : at + n], frames=n))
        at += n
    return np.concatenate(out, axis=-1)


def log(**fields):
    """DGEN_PROPERTY_LOG=path appends one JSON line per example (sizes, worst error / tolerance):
    how docs/reliability.md's numbers were measured."""
    path = os.environ.get("DGEN_PROPERTY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(fields) + "\n")


def assert_close_scaled(c, r, what, **info):
    c, r = np.asarray(c, np.float64), np.asarray(r, np.float64)
    assert np.all(np.isfinite(r)), f"{what}: the reference is not finite (a generator bug)"
    assert np.all(np.isfinite(c)), f"{what}: C is not finite where the reference is"
    scale = np.maximum(1.0, np.max(np.abs(r), axis=-1, keepdims=True))
    err = np.abs(c - r)
    tol = ATOL * scale + RTOL * np.abs(r)
    log(
        **info,
        worst=float(np.max(err / tol)) if err.size else 0.0,
        worst_abs=float(np.max(err / scale)) if err.size else 0.0,
    )
    if np.any(err > tol):
        k = np.unravel_index(np.argmax(err / tol), err.shape)
        raise AssertionError(
            f"{what}: {int(np.sum(err > tol))} values beyond tolerance; worst at {k}: "
            f"C={c[k]!r} reference={r[k]!r} (|diff|/tol = {float(err[k] / tol[k]):.3g})"
        )


# ------------------------------------------------------------------ 1 + 2: C vs reference, streaming
@requires_cc
@examples(ci=30, long=1000)
@given(st.data())
def test_c_matches_float32_reference_and_streams(data):
    steps = data.draw(st.integers(1, MAX_STEPS), label="steps")
    b = Builder(data)
    g = b.build(steps)
    b.outputs(data.draw(st.integers(1, 3), label="outputs"))
    instances = data.draw(st.sampled_from([1, 1, 3]), label="instances")
    frames = data.draw(st.integers(1, 700), label="frames")
    x = input_signals(data, frames, instances)
    c = dgen.compile(g, backend="c", frame_count=frames, instances=instances)
    r32 = dgen.compile(g, backend="reference", frame_count=frames, instances=instances, dtype=np.float32)
    yc, yr = c.run(x), r32.run(x)
    assert_close_scaled(
        yc,
        yr,
        f"C vs float32 reference ({steps} steps, {len(g)} nodes)",
        test="c",
        steps=steps,
        nodes=len(g),
        frames=frames,
        instances=instances,
    )
    sizes = chunks(data, frames)
    c.reset()
    r32.reset()
    np.testing.assert_array_equal(run_chunked(c, x, sizes), yc, err_msg=f"C chunked {sizes}")
    np.testing.assert_array_equal(run_chunked(r32, x, sizes), yr, err_msg=f"float32 reference chunked {sizes}")


@examples(ci=25, long=3000)
@given(st.data())
def test_reference_float64_streams(data):
    b = Builder(data)
    g = b.build(data.draw(st.integers(1, MAX_STEPS), label="steps"))
    b.outputs(2)
    frames = data.draw(st.integers(1, 500), label="frames")
    x = input_signals(data, frames).astype(np.float64)
    prog = dgen.compile(g, backend="reference", frame_count=frames)
    whole = prog.run(x)
    assert np.all(np.isfinite(whole))
    prog.reset()
    np.testing.assert_array_equal(run_chunked(prog, x, chunks(data, frames)), whole)


# ------------------------------------------------------------------ 3: gradients
def finite_difference(prog, p, x, h):
    v0 = p.value
    vals = []
    for v in (v0 + h, v0 - h):
        p.value = v
        prog.reset()
        vals.append(prog.run(x)[0].mean())
    p.value = v0
    return (vals[0] - vals[1]) / (2 * h)


@examples(ci=20, long=2000)
@given(st.data())
def test_gradients_match_finite_differences(data):
    g = dgen.Graph(sample_rate=SR)
    n_params = data.draw(st.integers(1, 3), label="parameters")
    params = [
        dgen.Parameter(g, f32(data.draw(st.floats(-0.8, 0.8), label="value")), name=f"p{k}") for k in range(n_params)
    ]
    b = Builder(data, smooth=True, params=params)
    b.build(data.draw(st.integers(1, 30), label="steps"))
    y = b.pool[-1].node
    for p in params:  # every parameter reaches the loss at least linearly
        y = y + p.node() * b.pick().node * 0.5
    loss = g.n(Op.mse, y, g.input(0))
    g.output(0, loss)
    frames = data.draw(st.integers(16, 160), label="frames")
    x = input_signals(data, frames).astype(np.float64)
    prog = dgen.compile(g, backend="reference", frame_count=frames, backwards=True)
    value, grads = prog.forward_backward(loss, x)
    fwd = dgen.compile(g, backend="reference", frame_count=frames)
    for p in params:
        ad = float(grads[p][0])
        fd = finite_difference(fwd, p, x, 1e-6)
        log(
            test="grad",
            nodes=len(g),
            frames=frames,
            rel=abs(ad - fd) / max(abs(fd), abs(ad), 1e-300),
            ad=ad,
            fd=float(fd),
            loss=float(value[0]),
        )
        assert math.isfinite(ad), f"{p.name}: gradient {ad}"
        # FD's own rounding noise is ~1e-16 * loss / h = 1e-10 * loss: below that nothing is measured
        assert abs(ad - fd) <= GRAD_ATOL * max(1.0, abs(value[0])) + GRAD_RTOL * max(abs(fd), abs(ad)), (
            f"{p.name}: AD {ad!r} vs FD {fd!r} ({len(g)} nodes, {frames} frames)"
        )


def test_profiles_are_registered():
    assert PROFILE.deadline is None
    if not LONG:
        assert PROFILE.derandomize  # CI runs the same examples every time: no flaky reds
    with pytest.raises(InvalidArgument):
        settings.get_profile("no-such-profile")


@pytest.mark.parametrize("backend", ["reference", pytest.param("c", marks=requires_cc)])
def test_input_channel_read_by_several_nodes(backend):
    """Found by the gradient property: two input(0) nodes made the adjoint write output(0)
    twice (GraphError); their adjoints are summed per channel now."""
    g = dgen.Graph()
    p = dgen.Parameter(g, 0.5, name="p")
    y = g.input(0) * p.node() + g.input(0) * 2.0 + g.input(1)
    g.output(0, y)
    loss = g.n(Op.mse, y, g.input(0))
    prog = dgen.compile(g, backend=backend, frame_count=8, backwards=True)
    _, dx, _ = prog.vjp(np.ones((2, 8)), np.ones((1, 8)))
    np.testing.assert_allclose(dx, [[2.5] * 8, [1.0] * 8])
    value, grads = prog.forward_backward(loss, np.ones((2, 8)))
    np.testing.assert_allclose(grads[p], [2 * (3.5 - 1.0)])
    late = g.n(Op.mul, loss, 2.0)  # a loss built after compile: a clear error, not a KeyError
    with pytest.raises(dgen.GraphError, match=rf"node {late.id} \(mul\), was added to the graph after it was compiled"):
        prog.forward_backward(late, np.ones((2, 8)))
