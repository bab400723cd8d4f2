"""Reverse-time kernels, the adjoint ops, tapes and buffer stages: CKernel vs ReferenceKernel
(float32) on small hand-built graphs, and whole training programs on the C backend vs the
reference backend."""

import math

import numpy as np
import pytest
from _csupport import FRAME_CHUNKS, assert_close, requires_cc

import dgen
from dgen import Op
from dgen.interp.reference import ReferenceKernel
from dgen.pipeline import plan
from dgen.runtime.c_program import CKernel

pytestmark = requires_cc
EXACT = dict(rtol=0.0, atol=float(np.finfo(np.float32).tiny))
INDICES = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, -0.5, -9.0, 7.99, 8.0, 2147483648.0], np.float32)


def adjoint_graph():
    """What backward graphs are made of: tapes, a carried adjoint (history run backwards),
    a gradient accumulator, memory_accum / memory_take on one cell, and a kept value."""
    g = dgen.Graph()
    t0, t1, t2 = g.n(Op.tape(100)), g.n(Op.tape(101)), g.n(Op.tape(102))
    h, write = g.history()
    carried = write(h * 0.5 + t0)
    g.n(Op.grad_accum(g.alloc()), t0 * t1)
    m = g.alloc(8)
    acc = g.n(Op.memory_accum(m), t2, t0)
    taken = g.seq(acc, g.n(Op.memory_take(m), t2 * 2.0))
    g.output(0, carried)
    g.output(1, taken)
    kept = g.n(Op.tanh, t1 * carried)
    g.output(2, kept + 1.0)
    return g, kept.id


def tapes(rng, frames, instances):
    shape = (frames,) if instances is None else (frames, instances)
    idx = (rng.standard_normal(shape) * 6).astype(np.float32)
    mask = rng.random(shape) < 0.2
    idx[mask] = rng.choice(INDICES, size=mask.sum())
    return {
        100: rng.standard_normal(shape).astype(np.float32),
        101: rng.standard_normal(shape).astype(np.float32),
        102: idx,
    }


@pytest.mark.parametrize("instances", [None, 1, 5])  # None: memory (M,), else (M, B)
@pytest.mark.parametrize("reverse", [True, False])
def test_adjoint_ops_match_reference_kernel(reverse, instances):
    g, kept = adjoint_graph()
    p = plan(g, expand=False, reverse=reverse)
    ref = ReferenceKernel(p.graph, p.schedule, p.layout, np.float32, reverse, keep=(kept,))
    ck = CKernel(p.graph, p.schedule, p.layout, np.float32, reverse, keep=(kept,))
    shape = (p.layout.size,) if instances is None else (p.layout.size, instances)
    mem_r, mem_c = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    rng = np.random.default_rng(4)
    for frames in FRAME_CHUNKS:
        tp = tapes(rng, frames, instances)
        vr = ref.execute(mem_r, frames, [], tp)
        vc = ck.execute(mem_c, frames, [], tp)
        for i in [kept, *(nd.id for nd in g.outputs().values())]:
            assert_close(vc[i], vr[i], what=f"node {i}, {frames} frames", rtol=2e-6, atol=1e-6)
        assert_close(mem_c, mem_r, what=f"memory after {frames} frames", **EXACT)


@pytest.mark.parametrize("instances", [1, 3])
def test_buffer_op_splits_stages(instances):
    """spectral_loss runs in Python between two compiled stages; values cross both ways, and
    a graph input goes straight into the buffer op."""
    g = dgen.Graph()
    a = g.n(Op.sin, g.n(Op.phasor(g.alloc()), g.input(0), 0.0) * 6.0)
    loss = g.spectral_loss(a, g.input(1), 16)
    h, write = g.history()
    g.output(0, write(h * 0.9 + loss * a))
    g.output(1, loss)
    c = dgen.compile(g, backend="c", frame_count=100, instances=instances)
    ref = dgen.compile(g, backend="reference", frame_count=100, dtype=np.float32, instances=instances)
    assert c.source.count("void dgen_stage") == 2
    rng = np.random.default_rng(5)
    for frames in (1, 31, 100):
        x = np.stack(
            [rng.uniform(100, 3000, (instances, frames)), rng.standard_normal((instances, frames))], axis=1
        ).astype(np.float32)
        x = x[0] if instances == 1 else x
        assert_close(c.run(x), ref.run(x), what=f"{frames} frames", rtol=1e-4, atol=1e-4)


def test_kernel_takes_plain_arrays():
    """CKernel.execute with arrays in the reference's layout (copied, not views) and memory
    that is not padded gives what the program gives."""
    g = dgen.Graph()
    g.output(0, g.sos(g.input(0) * g.input(1), 0.2, 0.3, 0.2, -0.5, 0.1))
    prog = dgen.compile(g, backend="c", frame_count=50, instances=5)
    x = np.random.default_rng(6).standard_normal((5, 2, 50)).astype(np.float32)
    want = prog.run(x)
    p = prog.plan
    kernel = CKernel(p.graph, p.schedule, p.layout)
    mem = np.zeros((p.layout.size, 5), np.float64)
    got = kernel.execute(mem, 50, [x[:, 0].T.copy(), x[:, 1].T.astype(np.float64)])
    out = p.graph.outputs()[0].id
    np.testing.assert_array_equal(got[out].T, want[:, 0])
    np.testing.assert_array_equal(mem.astype(np.float32), prog.mem)


def training_graph(instances):
    g = dgen.Graph()
    f = dgen.Parameter(g, np.linspace(200.0, 320.0, instances) if instances > 1 else 237.0, name="f")
    gain = dgen.Parameter(g, 0.8, name="gain")
    y = g.n(Op.sin, g.n(Op.phasor(g.alloc()), f.node(), 0.0) * (2 * math.pi)) * gain.node()
    y = g.biquad(g.delay(y, 3.5, 8), 2000.0, 0.7, 1.0, 0.0)
    target = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 300.0, 0.0) * (2 * math.pi))
    loss = g.n(Op.mse, y, target) + 10.0 * g.spectral_loss(y, target, 16)
    g.output(0, loss)
    return g, (f, gain), loss


@pytest.mark.parametrize("instances", [1, 3])
def test_training_program_matches_reference(instances):
    results = []
    for backend, kw in (("c", {}), ("reference", {"dtype": np.float32})):
        g, params, loss = training_graph(instances)
        prog = dgen.compile(g, backend=backend, frame_count=1024, backwards=True, instances=instances, **kw)
        value, grads = prog.forward_backward(loss)
        results.append((value, [grads[p] for p in params]))
        if backend == "c":
            assert "dgen_stage0" in prog.source
    (lc, gc), (lr, gr) = results
    assert_close(lc, lr, what="loss", rtol=1e-5, atol=0)
    for a, b in zip(gc, gr):
        # sums over 1024 frames with cancellation: ulp-level differences in sin/cos add up
        assert_close(a, b, what="gradient", rtol=1e-4, atol=1e-4 * np.abs(b).max())
