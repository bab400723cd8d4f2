"""Reverse-time kernels, the adjoint ops, tapes and buffer stages: CudaKernel vs
ReferenceKernel (float32); whole training programs on CUDA vs the reference backend
(losses and gradients), vjp, and TrainingContext runs."""

import numpy as np
import pytest
from _csupport import FRAME_CHUNKS, assert_close
from _cudasupport import EXACT, requires_cuda
from test_c_adjoint import adjoint_graph, tapes, training_graph

import dgen
from dgen import Op
from dgen.interp.reference import ReferenceKernel
from dgen.pipeline import plan

pytestmark = requires_cuda


@pytest.mark.parametrize("device", [False, True])  # NumPy arrays (copied) or CuPy arrays (in place)
@pytest.mark.parametrize("instances", [None, 1, 5])  # None: memory (M,), else (M, B)
@pytest.mark.parametrize("reverse", [True, False])
def test_adjoint_ops_match_reference_kernel(reverse, instances, device):
    import cupy as cp

    from dgen.runtime.cuda_program import CudaKernel

    g, kept = adjoint_graph()
    p = plan(g, expand=False, reverse=reverse)
    ref = ReferenceKernel(p.graph, p.schedule, p.layout, np.float32, reverse, keep=(kept,))
    ck = CudaKernel(p.graph, p.schedule, p.layout, np.float32, reverse, keep=(kept,))
    shape = (p.layout.size,) if instances is None else (p.layout.size, instances)
    mem_r = np.zeros(shape, np.float32)
    mem_c = cp.zeros(shape, np.float32) if device else np.zeros(shape, np.float32)
    rng = np.random.default_rng(4)
    for frames in FRAME_CHUNKS:
        tp = tapes(rng, frames, instances)
        vr = ref.execute(mem_r, frames, [], tp)
        vc = ck.execute(mem_c, frames, [], {k: cp.asarray(v) for k, v in tp.items()} if device else tp)
        for i in [kept, *(nd.id for nd in g.outputs().values())]:
            assert_close(cp.asnumpy(vc[i]), vr[i], what=f"node {i}, {frames} frames", rtol=2e-6, atol=1e-6)
        assert_close(cp.asnumpy(mem_c), mem_r, what=f"memory after {frames} frames", **EXACT)


def test_buffer_op_splits_stages():
    """spectral_loss runs on the host between two compiled stages; values cross both ways."""
    g = dgen.Graph()
    a = g.n(Op.sin, g.n(Op.phasor(g.alloc()), g.input(0), 0.0) * 6.0)
    b = g.input(1) * 0.5
    loss = g.spectral_loss(a, b, 16)
    h, write = g.history()
    g.output(0, write(h * 0.9 + loss * a))
    g.output(1, loss)
    cu = dgen.compile(g, backend="cuda", frame_count=100)
    ref = dgen.compile(g, backend="reference", frame_count=100, dtype=np.float32)
    assert "dgen_stage1" in cu.source
    rng = np.random.default_rng(5)
    for frames in (1, 31, 100):
        x = np.stack([rng.uniform(100, 3000, frames), rng.standard_normal(frames)]).astype(np.float32)
        assert_close(cu.run(x), ref.run(x), what=f"{frames} frames", rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("instances", [1, 3, 64])
def test_training_program_matches_reference(instances):
    results = []
    for backend, kw in (("cuda", {}), ("reference", {"dtype": np.float32})):
        g, params, loss = training_graph(instances)
        prog = dgen.compile(g, backend=backend, frame_count=1024, backwards=True, instances=instances, **kw)
        value, grads = prog.forward_backward(loss)
        results.append((value, [grads[p] for p in params]))
    (lc, gc), (lr, gr) = results
    assert_close(lc, lr, what="loss", rtol=1e-5, atol=0)
    for a, b in zip(gc, gr):
        assert_close(a, b, what="gradient", rtol=1e-4, atol=1e-4 * np.abs(b).max())


def biquad_fit(instances):
    g = dgen.Graph()
    cutoff = dgen.Parameter(
        g, np.linspace(500.0, 4000.0, instances) if instances > 1 else 800.0, name="cutoff", min=20.0, max=20000.0
    )
    q = dgen.Parameter(g, 0.9, name="q", min=0.1, max=10.0)
    x = g.input(0)
    y = g.biquad(x, cutoff.node(), q.node(), 1.0, 0.0)
    target = g.biquad(x, 1500.0, 0.7, 1.0, 0.0)
    loss = g.n(Op.mse, y, target)
    g.output(0, loss)
    return g, (cutoff, q), loss


@pytest.mark.parametrize("instances", [1, 4])
def test_biquad_gradients_match_reference(instances):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((instances, 1, 2048)).astype(np.float32)
    x = x[0] if instances == 1 else x
    results = []
    for backend, kw in (("cuda", {}), ("reference", {"dtype": np.float32})):
        g, params, loss = biquad_fit(instances)
        prog = dgen.compile(g, backend=backend, frame_count=2048, backwards=True, instances=instances, **kw)
        value, grads = prog.forward_backward(loss, x)
        results.append((value, [grads[p] for p in params]))
    (lc, gc), (lr, gr) = results
    assert_close(lc, lr, what="loss", rtol=1e-4, atol=0)
    for a, b in zip(gc, gr):
        assert_close(a, b, what="gradient", rtol=2e-3, atol=1e-3 * np.abs(b).max())


def test_vjp_matches_reference():
    outs = []
    for backend, kw in (("cuda", {}), ("reference", {"dtype": np.float32})):
        g, params, _ = biquad_fit(2)
        prog = dgen.compile(g, backend=backend, frame_count=256, backwards=True, instances=2, **kw)
        rng = np.random.default_rng(11)
        x = rng.standard_normal((2, 1, 256)).astype(np.float32)
        up = rng.standard_normal((2, 1, 256)).astype(np.float32)
        outs.append(prog.vjp(x, up))
    (yc, dxc, gc), (yr, dxr, gr) = outs
    assert_close(yc, yr, rtol=1e-4, atol=1e-6)
    assert_close(dxc, dxr, rtol=1e-3, atol=1e-4 * np.abs(dxr).max())
    for p in gc:
        q = next(k for k in gr if k.name == p.name)
        assert_close(gc[p], gr[q], rtol=1e-3, atol=1e-3 * np.abs(gr[q]).max())


def test_training_context_follows_reference():
    """Ten Adam steps: the CUDA parameters track the reference (float32) trajectory."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 1, 1024)).astype(np.float32)
    finals = []
    for backend, kw in (("cuda", {}), ("reference", {"dtype": np.float32})):
        g, params, loss = biquad_fit(3)
        prog = dgen.compile(g, backend=backend, frame_count=1024, backwards=True, instances=3, **kw)
        ctx = dgen.TrainingContext(list(params), dgen.Adam(lr=20.0), loss, prog)
        ctx.train(10, inputs=x, progress=False)
        finals.append(np.asarray(params[0].value, np.float64))
    assert_close(finals[0], finals[1], rtol=1e-3, atol=0)


@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("hop", [1, 3])
def test_spectral_loss_on_gpu_matches_numpy(hop, instances):
    """cuda_buffer's spectral loss (streamed over chunks, window history in its cell) and its
    gradient vs the ops' NumPy code."""
    import cupy as cp

    from dgen.runtime.cuda_buffer import spectral_loss, spectral_loss_grad

    W = 16
    op, gop = Op.spectral_loss(dgen.Graph().alloc(2 * W - 1), W, hop), Op.spectral_loss_grad(W, hop)
    rng = np.random.default_rng(13)
    mem_h = np.zeros((2 * W - 1, instances), np.float32)
    mem_d = cp.zeros((2 * W - 1, instances), np.float32)
    for frames in (5, 40, 100):
        a, b = (rng.standard_normal((frames, instances)).astype(np.float32) for _ in range(2))
        want = op.run(mem_h, 0, a, b)
        got = spectral_loss(cp, op, mem_d, cp.asarray(a), cp.asarray(b))
        assert_close(got.get(), want, rtol=1e-5, atol=1e-5, what=f"loss, {frames} frames")
        assert_close(mem_d.get(), mem_h, **EXACT)
    adj = rng.standard_normal((100, instances)).astype(np.float32)
    want = gop.ref(adj, a, b)
    got = spectral_loss_grad(cp, gop, None, *(cp.asarray(v) for v in (adj, a, b)))
    assert_close(got.get(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max(), what="gradient")
