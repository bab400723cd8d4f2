"""TrainingContext.train on the C backend runs its loop on bound kernels (train/fast.py:
train_bound) and writes the context once at the end (train/loop.py). Against the per-step
loop (zero_grad, forward_backward, step: what a callback forces): the same history, values,
gradients and optimizer state, bit for bit, and the same error at the same step."""

from __future__ import annotations

import numpy as np
import pytest

import dgen
from dgen import Op
from dgen.train.context import history_json

from ._csupport import requires_cc

pytestmark = requires_cc


def _one_pole(instances):
    g = dgen.Graph()
    a = dgen.Parameter(g, np.linspace(0.3, 0.7, instances) if instances > 1 else 0.5, name="a", min=0.0, max=0.99)
    gain = dgen.Parameter(g, 0.8, name="gain")
    prev, write = g.history()
    y = write((1.0 - a.node()) * g.input(0) + a.node() * prev) * gain.node()
    loss = g.n(Op.mse, y, g.input(1))
    g.output(0, loss)
    x = np.random.default_rng(instances).uniform(-1, 1, (instances, 2, 512)).astype(np.float32)
    return g, [a, gain], loss, x[0] if instances == 1 else x


def _train(instances, optimizer, steps, per_step, split=()):
    g, params, loss, x = _one_pole(instances)
    prog = dgen.compile(g, backend="c", frame_count=512, backwards=True, instances=instances)
    ctx = dgen.TrainingContext(params, optimizer, loss, prog)
    for n in (*split, steps - sum(split)):
        ctx.train(n, inputs=x, progress=False, callback=(lambda c: None) if per_step else None)
    return ctx


@pytest.mark.parametrize("instances", [1, 3, 8])
@pytest.mark.parametrize(
    "make", [lambda: dgen.SGD(lr=0.5, momentum=0.3), lambda: dgen.Adam(lr=0.05)], ids=["sgd", "adam"]
)
def test_bound_loop_equals_per_step_loop(instances, make):
    fused = _train(instances, make(), 15, per_step=False, split=(4,))
    stepped = _train(instances, make(), 15, per_step=True)
    assert fused.steps == stepped.steps == 15
    assert history_json(fused.history) == history_json(stepped.history)  # bit-identical
    for p, q in zip(fused.parameters, stepped.parameters):
        np.testing.assert_array_equal(p.value, q.value)
        np.testing.assert_array_equal(p.grad, q.grad)
    assert fused.optimizer.state_dict() == stepped.optimizer.state_dict()
    np.testing.assert_array_equal(fused.last_loss, stepped.last_loss)


def _exploding():
    g = dgen.Graph()
    a = dgen.Parameter(g, 1.0, name="slope")
    y = g.n(Op.exp, a.node() * g.input(0) * 3.0)
    loss = (y - 1e6) * (y - 1e6)
    g.output(0, loss)
    return g, a, loss


@pytest.mark.parametrize("per_step", [False, True])
def test_divergence_stops_at_the_same_step(per_step):
    results = []
    for per in (per_step, not per_step):
        g, a, loss = _exploding()
        prog = dgen.compile(g, backend="c", frame_count=32, backwards=True)
        ctx = dgen.TrainingContext([a], dgen.SGD(lr=1e6), loss, prog)
        callback = (lambda c: None) if per else None
        with pytest.raises(dgen.TrainingError) as info:
            ctx.train(50, inputs=np.linspace(0, 1, 32)[None], progress=False, callback=callback)
        results.append((str(info.value), ctx.steps, history_json(ctx.history), a.value))
    assert results[0] == results[1]
    assert "slope" in results[0][0] and f"step {results[0][1]}" in results[0][0]


def test_zero_steps_change_nothing():
    for per_step in (False, True):
        ctx = _train(2, dgen.Adam(lr=0.05), 0, per_step=per_step)
        assert ctx.steps == 0 and ctx.history == [] and ctx.last_loss is None
        np.testing.assert_array_equal(ctx.parameters[0].value, [0.3, 0.7])
