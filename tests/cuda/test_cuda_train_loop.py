"""TrainingContext.train on CUDA runs the whole loop on the GPU (runtime/cuda_train.py). The
same context API with a callback takes the generic per-step loop (zero_grad, forward_backward,
step with NumPy optimizers): both must give the same trajectory, history, optimizer state and
errors."""

import math

import numpy as np
import pytest
from _csupport import assert_close
from _cudasupport import requires_cuda
from test_cuda_adjoint import biquad_fit

import dgen
from dgen import Op

pytestmark = requires_cuda


def seed_fit(instances):
    """The seed graph: two phasors, sin, LFO multiply, spectral + mse loss against a target."""
    g = dgen.Graph()
    freq = dgen.Parameter(g, np.linspace(250.0, 350.0, instances), name="frequency", min=20.0, max=5000.0)
    lfo = dgen.Parameter(g, 8.5, name="lfo", min=0.1, max=100.0)
    two_pi = 2 * math.pi
    learned = g.n(Op.sin, g.n(Op.phasor(g.alloc()), freq.node(), 0.0) * two_pi) * g.n(
        Op.phasor(g.alloc()), lfo.node(), 0.0
    )
    target = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 300.0, 0.0) * two_pi) * g.n(Op.phasor(g.alloc()), 10.0, 0.0)
    loss = 100.0 * g.spectral_loss(learned, target, 64) + 0.003 * g.n(Op.mse, learned, target)
    g.output(0, loss)
    return g, (freq, lfo), loss


def _fit(build, instances, optimizer, steps, x=None, split=(), per_step=False, graphs=True):
    g, params, loss = build(instances)
    prog = dgen.compile(g, backend="cuda", frame_count=1024, backwards=True, instances=instances, cuda_graphs=graphs)
    ctx = dgen.TrainingContext(list(params), optimizer, loss, prog)
    callback = (lambda c: None) if per_step else None  # a callback forces the per-step loop
    for n in (*split, steps - sum(split)):
        ctx.train(n, inputs=x, progress=False, callback=callback)
    return ctx


@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize(
    "make_optimizer", [lambda: dgen.Adam(lr=30.0), lambda: dgen.SGD(lr=1e4, momentum=0.5)], ids=["adam", "sgd-momentum"]
)
@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graph", "launches"])
def test_fused_loop_equals_per_step_loop(instances, make_optimizer, graphs):
    x = np.random.default_rng(1).standard_normal((instances, 1, 1024)).astype(np.float32)
    fused = _fit(biquad_fit, instances, make_optimizer(), 12, x, split=(5,), graphs=graphs)  # resumes state
    assert fused.program.last_train_graphed == graphs
    stepped = _fit(biquad_fit, instances, make_optimizer(), 12, x, per_step=True)
    assert fused.steps == stepped.steps == 12
    for a, b in zip(fused.history, stepped.history):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for key in a:
            assert_close(np.asarray(a[key], float), np.asarray(b[key], float), rtol=1e-6, atol=0, what=key)
    for p, q in zip(fused.parameters, stepped.parameters):
        assert_close(np.asarray(p.grad, float), np.asarray(q.grad, float), rtol=1e-6, atol=1e-12, what=p.name)
    a, b = fused.optimizer.state_dict(), stepped.optimizer.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for name, st in a["state"].items():
        for key, v in st.items():
            assert_close(np.asarray(v), np.asarray(b["state"][name][key]), rtol=1e-6, atol=1e-300, what=key)


def test_fused_seed_loop_moves_toward_target():
    """The seed graph with its spectral loss (cuFFT), trained on the GPU: same as per step."""
    fused = _fit(seed_fit, 2, dgen.Adam(lr=0.5), 8)
    assert fused.program.last_train_graphed  # cuFFT and the spectral kernels inside the graph
    assert fused.program.last_train_capture_error is None
    stepped = _fit(seed_fit, 2, dgen.Adam(lr=0.5), 8, per_step=True)
    for a, b in zip(fused.history, stepped.history):
        assert_close(np.asarray(a["loss"]), np.asarray(b["loss"]), rtol=1e-5, atol=0, what="loss")
        assert_close(np.asarray(a["frequency"]), np.asarray(b["frequency"]), rtol=1e-7, atol=0, what="freq")


def _diverging(instances):
    """loss = (log p)^2 with p pushed below 0 by a big SGD step: log of a negative -> NaN."""
    g = dgen.Graph()
    p = dgen.Parameter(g, 2.0, name="p")
    loss = g.n(Op.log, p.node()) * g.n(Op.log, p.node())
    g.output(0, loss)
    return g, (p,), loss


@pytest.mark.parametrize("per_step", [False, True])
def test_non_finite_stops_at_the_same_step(per_step):
    g, params, loss = _diverging(1)
    prog = dgen.compile(g, backend="cuda", frame_count=64, backwards=True)
    ctx = dgen.TrainingContext(list(params), dgen.SGD(lr=3.0), loss, prog)
    with pytest.raises(dgen.TrainingError, match=r"not finite\) at step 2; parameter values: p=") as info:
        ctx.train(10, progress=False, callback=(lambda c: None) if per_step else None)
    assert ctx.steps == 2 and len(ctx.history) == 1
    # the failing step's update is not applied: p keeps the value after step 1
    assert params[0].value == pytest.approx(ctx.history[0]["p"])
    assert math.isfinite(params[0].value), info.value


def test_clamped_to_bounds_on_gpu():
    fused = _fit(biquad_fit, 2, dgen.SGD(lr=1e12), 3, np.ones((2, 1, 1024), np.float32))
    for p in fused.parameters:
        v = np.asarray(p.value)
        assert np.all((v >= p.min) & (v <= p.max)), (p.name, v)


def _hop2_fit(instances):
    """A spectral loss with hop 2: its phase is read on the host each call, which a CUDA graph
    cannot capture, so ctx.train falls back to launching each step."""
    g = dgen.Graph()
    freq = dgen.Parameter(g, np.linspace(280.0, 320.0, instances), name="frequency", min=20.0, max=5000.0)
    two_pi = 2 * math.pi
    learned = g.n(Op.sin, g.n(Op.phasor(g.alloc()), freq.node(), 0.0) * two_pi)
    target = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 300.0, 0.0) * two_pi)
    loss = g.spectral_loss(learned, target, 256, hop=2)
    g.output(0, loss)
    return g, (freq,), loss


def test_uncapturable_step_falls_back_to_launches():
    fused = _fit(_hop2_fit, 2, dgen.Adam(lr=1.0), 6)
    assert not fused.program.last_train_graphed
    assert fused.program.last_train_capture_error  # the reason, for the user
    stepped = _fit(_hop2_fit, 2, dgen.Adam(lr=1.0), 6, per_step=True)
    for a, b in zip(fused.history, stepped.history):
        assert_close(np.asarray(a["loss"]), np.asarray(b["loss"]), rtol=1e-6, atol=0, what="loss")
        assert_close(np.asarray(a["frequency"]), np.asarray(b["frequency"]), rtol=1e-9, atol=0, what="freq")


def test_seed_step_takes_its_loss_from_the_gradient_kernel():
    """From the reset state (every step of ctx.train), the spectral loss's forward value comes
    out of its gradient kernel: the same loss, gradients and state after the step as the
    forward op followed by the backward pass."""
    import cupy as cp

    g, params, loss = seed_fit(3)
    prog = dgen.compile(g, backend="cuda", frame_count=1024, backwards=True, instances=3)
    step = prog.lean(loss)
    assert prog.fused_loss(step) is not None
    results = []
    for fresh in (False, True):
        prog.forward.reset()
        prog.forward._sync_parameters()
        bmem = cp.zeros((step.size, 3), cp.float32)
        chans = prog.forward.channel_arrays(prog.step_inputs(None, "train"))
        per_instance = prog.run_step(step, chans, 1024, bmem, fresh=fresh)
        results.append((per_instance.get(), bmem.get(), prog.forward.mem.get()))
    (loss0, grads0, mem0), (loss1, grads1, mem1) = results
    assert_close(loss1, loss0, rtol=1e-6, atol=0, what="loss per instance")
    assert_close(grads1, grads0, rtol=1e-6, atol=1e-6 * np.abs(grads0).max(), what="backward memory")
    np.testing.assert_array_equal(mem1, mem0)  # phasor states and the window history
