"""Training checkpoints (docs/reliability.md, "Checkpoints"): `ctx.save(path)` then
`TrainingContext.load(path, parameters, optimizer, loss, program)` in a fresh graph and
program continues exactly where training stopped: the parameter values and losses of the
resumed run are bit-identical (reference backend) to a run that never stopped, for SGD
(with and without momentum) and Adam, with one instance and with several.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _support import requires_cc

import dgen
from dgen import Op

FRAMES = 256


def problem(instances=1, backend="reference"):
    """Fit a one-pole lowpass (coefficient, gain) and a sine's frequency to a target."""
    g = dgen.Graph()
    B = instances
    a = dgen.Parameter(g, 0.3 if B == 1 else np.linspace(0.2, 0.6, B), name="coeff", min=0.0, max=0.99)
    gain = dgen.Parameter(g, 0.5 if B == 1 else np.linspace(0.4, 0.8, B), name="gain")
    freq = dgen.Parameter(g, 430.0 if B == 1 else np.linspace(420, 460, B), name="freq")
    ph = g.n(Op.phasor(g.alloc()), freq.node(), 0.0)
    x = g.n(Op.sin, ph * (2 * math.pi))
    prev, close = g.history()
    y = close((1.0 - a.node()) * x * gain.node() + a.node() * prev)
    target = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 440.0, 0.0) * (2 * math.pi)) * 0.8
    loss = g.n(Op.mse, y, target)
    g.output(0, loss)
    prog = dgen.compile(g, backend=backend, frame_count=FRAMES, backwards=True, instances=instances)
    return [a, gain, freq], loss, prog


OPTIMIZERS = {
    "sgd": lambda: dgen.SGD(lr=0.05),
    "momentum": lambda: dgen.SGD(lr=0.02, momentum=0.9),
    "adam": lambda: dgen.Adam(lr=0.01),
}


def trajectory(ctx):
    plain = lambda v: np.asarray(v).tolist()  # noqa: E731 - floats for one instance, arrays of B values else
    return [(plain(row["loss"]), [plain(row[p.name]) for p in ctx.parameters]) for row in ctx.history]


@pytest.mark.parametrize("backend", ["reference", pytest.param("c", marks=requires_cc)])
@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_resume_equals_never_stopping(tmp_path, opt, instances, backend):
    total, stop = 9, 4
    params, loss, prog = problem(instances, backend)
    straight = dgen.TrainingContext(params, OPTIMIZERS[opt](), loss, prog)
    straight.train(total)
    want = trajectory(straight)
    want_values = [np.copy(p.value) for p in params]

    params, loss, prog = problem(instances, backend)
    first = dgen.TrainingContext(params, OPTIMIZERS[opt](), loss, prog)
    first.train(stop)
    path = tmp_path / "ckpt.json"
    first.save(path)

    params, loss, prog = problem(instances, backend)  # as a new process would: fresh everything
    resumed = dgen.TrainingContext.load(path, params, OPTIMIZERS[opt](), loss, prog)
    assert resumed.steps == stop
    resumed.train(total - stop)
    got = trajectory(resumed)
    assert len(got) == total
    # the reference is deterministic: bit-identical; C is deterministic too on one machine
    assert got == want
    for p, v in zip(params, want_values):
        np.testing.assert_array_equal(p.value, v)


def test_checkpoint_format(tmp_path):
    params, loss, prog = problem(2)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=0.01, beta1=0.8), loss, prog)
    ctx.train(2)
    path = tmp_path / "ckpt.json"
    ctx.save(path)
    state = json.loads(path.read_text())
    assert state["format"] == "dgen-checkpoint" and state["version"] == 1
    assert state["steps"] == 2
    assert set(state["parameters"]) == {"coeff", "gain", "freq"} and len(state["parameters"]["gain"]) == 2
    opt = state["optimizer"]
    assert opt["type"] == "Adam" and opt["lr"] == 0.01 and opt["beta1"] == 0.8
    assert set(opt["state"]["gain"]) == {"m", "v", "t"}
    assert len(state["history"]) == 2 and state["history"][-1]["step"] == 2


def test_load_rejects_mismatches(tmp_path):
    params, loss, prog = problem()
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=0.01), loss, prog)
    ctx.train(1)
    path = tmp_path / "ckpt.json"
    ctx.save(path)
    # another optimizer type
    params, loss, prog = problem()
    with pytest.raises(dgen.TrainingError, match="checkpoint was made with Adam, not SGD"):
        dgen.TrainingContext.load(path, params, dgen.SGD(lr=0.01), loss, prog)
    # a parameter the checkpoint lacks
    g_params, loss, prog = problem()
    extra = dgen.Parameter(loss.graph, 1.0, name="extra")
    prog = dgen.compile(loss.graph, backend="reference", frame_count=FRAMES, backwards=True)
    with pytest.raises(dgen.TrainingError, match="checkpoint has no value for parameter 'extra'"):
        dgen.TrainingContext.load(path, [*g_params, extra], dgen.Adam(lr=0.01), loss, prog)
    # a parameter this context lacks
    params, loss, prog = problem()
    with pytest.raises(dgen.TrainingError, match="checkpoint has parameter 'freq' that this context lacks"):
        dgen.TrainingContext.load(path, params[:2], dgen.Adam(lr=0.01), loss, prog)
    # a different instance count
    params, loss, prog = problem(3)
    with pytest.raises(dgen.TrainingError, match="1 value.* 3 instances"):
        dgen.TrainingContext.load(path, params, dgen.Adam(lr=0.01), loss, prog)
    # not a checkpoint
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": 1')
    params, loss, prog = problem()
    with pytest.raises(dgen.TrainingError, match="not a dgen checkpoint"):
        dgen.TrainingContext.load(bad, params, dgen.Adam(lr=0.01), loss, prog)


def test_save_is_atomic(tmp_path, monkeypatch):
    """A save that fails half-way leaves the previous checkpoint intact."""
    params, loss, prog = problem()
    ctx = dgen.TrainingContext(params, dgen.SGD(lr=0.05), loss, prog)
    ctx.train(1)
    path = tmp_path / "ckpt.json"
    ctx.save(path)
    before = path.read_text()
    ctx.train(1)

    def broken_dump(obj, f, **kw):
        f.write('{"steps": ')
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        ctx.save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.json"]  # no temporary left behind


@pytest.mark.parametrize("backend", ["reference", pytest.param("c", marks=requires_cc)])
def test_history_rows_own_their_values(backend):
    """With B > 1 the rows are arrays (docs/reliability.md); changing what train() returned, a
    parameter's value or another row leaves every row as recorded."""
    params, loss, prog = problem(3, backend)
    ctx = dgen.TrainingContext(params, dgen.Adam(lr=0.01), loss, prog)
    returned = ctx.train(3)
    recorded = trajectory(ctx)
    assert isinstance(ctx.history[-1]["loss"], np.ndarray) and ctx.history[-1]["loss"].shape == (3,)
    np.testing.assert_array_equal(returned, ctx.history[-1]["loss"])
    returned *= 2.0
    ctx.last_loss *= 3.0
    params[0].value *= 0.5
    ctx.history[0]["gain"][:] = 0.0
    assert trajectory(ctx)[1:] == recorded[1:]
