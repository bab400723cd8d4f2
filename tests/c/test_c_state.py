"""Stateful ops and building blocks on the C backend vs the float32 reference: phasor, accum,
latch, history loops, delay, sos, biquad (all modes), compressor, selector, seq, memory with
extreme indices. Also: instances in lanes equal separate runs, streaming invariance,
per-instance parameters."""

import numpy as np
import pytest
from _csupport import CLOSE, FRAME_CHUNKS, assert_close, programs, requires_cc, stream

import dgen
from dgen import Op

pytestmark = requires_cc

N = sum(FRAME_CHUNKS)
EXACT = dict(rtol=0.0, atol=float(np.finfo(np.float32).tiny))  # up to flushed denormals
EXTREME_INDICES = np.array(
    [
        np.nan,
        np.inf,
        -np.inf,
        1e30,
        -1e30,
        2147483648.0,
        -2147483648.0,
        2147483520.0,
        -0.5,
        -5.0,
        4.999,
        5.0,
        1e10,
        -3e9,
        16777217.0,
        -1e-7,
        3.5,
    ],
    np.float32,
)


def oscillators(g, x):
    freq, reset, value, trigger = x
    g.output(0, g.n(Op.phasor(g.alloc()), freq, reset))
    g.output(1, g.n(Op.accum(g.alloc()), value, reset))
    g.output(2, g.n(Op.accum(g.alloc()), value * 0.1, reset, -1.0, 2.0))
    g.output(3, g.n(Op.latch(g.alloc()), value, trigger))
    g.output(4, g.n(Op.phasor(g.alloc()), 440.0, 0.0))
    h, write = g.history()
    g.output(5, write(0.1 * value + 0.9 * h))
    h2, write2 = g.history(g.alloc(init=0.25))  # a cell with a reset value
    g.output(6, write2(h2 * 0.99 + value * 0.01))


def filters(g, x):
    sig, cutoff, mode, b0 = x
    for m in range(6):
        g.output(m, g.biquad(sig, cutoff, 0.7, 1.5, float(m)))
    g.output(6, g.biquad(sig, 1000.0, 2.0, 1.0, mode))  # mode changing per frame, out of range too
    g.output(7, g.sos(sig, 0.2, 0.3, 0.2, -0.5, 0.1))
    g.output(8, g.sos(sig, b0, 0.3, 0.2, -0.5, 0.1))  # a coefficient changing per frame


def dynamics(g, x):
    sig, side = x[0], x[1]
    g.output(0, g.compressor(sig, 4.0, -20.0, 6.0, 0.01, 0.1))
    g.output(1, g.compressor(sig, 2.0, -30.0, 0.0, 0.002, 0.05, 1.0, side))


def memory(g, x):
    sig, d, idx, idx2, sel = x
    g.output(0, g.delay(sig, d, 16))
    g.output(1, g.delay(sig, 2.25))  # default max delay (2 s), constant d
    buf = g.alloc(5)
    before = g.n(Op.memory_read(buf), idx2)  # sees the previous frame's write
    w = g.n(Op.memory_write(buf), idx, sig)
    after = g.seq(w, g.n(Op.memory_read(buf), idx2))
    g.output(2, before)
    g.output(3, after)
    g.output(4, g.selector(sel, sig, d, idx2))
    big = g.alloc(3000)
    g.output(5, g.seq(g.n(Op.memory_write(big), idx * 7.0, d), g.n(Op.memory_read(big), idx2 * 3.0)))


GRAPHS = {  # builder, input channels, signal maker, tolerance
    "oscillators": (oscillators, 4, EXACT),
    "filters": (filters, 4, CLOSE),
    "dynamics": (dynamics, 2, CLOSE),
    "memory": (memory, 5, EXACT),
}


def make_inputs(name, rng, instances, frames):
    B = instances
    u = lambda lo, hi: rng.uniform(lo, hi, (B, frames)).astype(np.float32)
    sparse = lambda p: (rng.random((B, frames)) < p).astype(np.float32)
    sig = (rng.standard_normal((B, frames)) * 0.5).astype(np.float32)
    if name == "oscillators":
        chans = [u(-3000, 8000), sparse(0.01), sig * 4, sparse(0.05)]
    elif name == "filters":
        chans = [sig, u(20, 15000), np.round(u(-2, 8) * 2) / 2, u(-1, 1)]
    elif name == "dynamics":
        chans = [sig * u(0, 3), sig[:, ::-1].copy()]
    else:
        idx = (rng.standard_normal((B, frames)) * 10).astype(np.float32)
        idx2 = idx[:, ::-1].copy()
        for a in (idx, idx2):
            mask = rng.random((B, frames)) < 0.2
            a[mask] = rng.choice(EXTREME_INDICES, size=mask.sum())
        chans = [sig, u(-2, 20), idx, idx2, u(-1, 5)]
    x = np.stack(chans, axis=1)
    return x[0] if instances == 1 else x


def build(name):
    builder, channels, tol = GRAPHS[name]
    g = dgen.Graph()
    builder(g, [g.input(c) for c in range(channels)])
    return g, tol


@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_blocks_match_reference(name, instances):
    g, tol = build(name)
    c, ref = programs(g, frame_count=N, instances=instances)
    x = make_inputs(name, np.random.default_rng(1), instances, N)
    assert_close(stream(c, x), stream(ref, x), what=name, **tol)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_instances_equal_separate_runs(name):
    g, tol = build(name)
    single = dgen.compile(g, backend="c", frame_count=N)
    x = make_inputs(name, np.random.default_rng(2), 19, N)
    alone = []
    for b in range(19):
        single.reset()
        alone.append(single.run(x[b]))
    alone = np.stack(alone)
    for B in (3, 8, 19):
        many = dgen.compile(g, backend="c", frame_count=N, instances=B)
        # one instance vs many: sf_ (libm) vs vf_ (libmvec) transcendentals may differ by ulps
        assert_close(many.run(x[:B]), alone[:B], what=f"{name}, {B} instances", **tol)


@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_streaming_invariance(name, instances):
    g, _ = build(name)
    prog = dgen.compile(g, backend="c", frame_count=4096, instances=instances)
    x = make_inputs(name, np.random.default_rng(3), instances, 4096)
    whole = prog.run(x)
    prog.reset()
    parts = np.concatenate([prog.run(x[..., :1000]), prog.run(x[..., 1000:])], axis=-1)
    np.testing.assert_array_equal(parts, whole)


def test_parameters_per_instance():
    g = dgen.Graph()
    f = dgen.Parameter(g, value=[100.0, 200.0, 300.0, 400.0, 5000.0], name="f")
    gain = dgen.Parameter(g, value=0.5, name="gain")
    ph = g.n(Op.phasor(g.alloc()), f.node(), 0.0)
    g.output(0, g.n(Op.sin, ph * (2 * np.pi)) * gain.node())
    g.output(1, f.node() * 2.0 + gain.node())  # a uniform: computed once per call
    c, ref = programs(g, frame_count=300, instances=5)
    assert_close(stream(c), stream(ref), what="parameters", **CLOSE)
    f.value = [1.0, 2.0, 3.0, 4.0, 5.0]  # takes effect at the next run
    assert_close(c.run(frames=10)[:, 1], np.repeat([[2.5], [4.5], [6.5], [8.5], [10.5]], 10, axis=1), **EXACT)


def test_reset_restores_initial_state():
    g = dgen.Graph()
    h, write = g.history(g.alloc(init=0.25))
    g.output(0, write(h + 1.0))
    prog = dgen.compile(g, backend="c", frame_count=5, instances=2)
    first = prog.run()
    prog.run()
    prog.reset()
    np.testing.assert_array_equal(prog.run(), first)
    np.testing.assert_array_equal(first[0, 0], [1.25, 2.25, 3.25, 4.25, 5.25])


def test_delays_timed_by_other_delays():
    """Delay times computed from other delays' outputs: a valid graph (it once failed as a
    false algebraic loop through seq ordering edges between unrelated cells)."""
    g = dgen.Graph()
    x = g.input(0)
    ya = g.delay(x, 2.0, 8)
    yb = g.delay(x, g.n(Op.abs, ya) * 4.0, 8)
    g.output(0, g.delay(ya, g.n(Op.abs, yb) * 4.0, 8))
    c, ref = programs(g, frame_count=N)
    x = np.random.default_rng(9).standard_normal(N).astype(np.float32)[None]
    out = stream(c, x)
    assert_close(out, stream(ref, x), what="chained delays", **EXACT)
    assert np.abs(out).max() > 0.1
