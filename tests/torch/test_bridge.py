"""dgen.torch: a compiled patch inside torch autograd (gradcheck, C vs reference, training)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (an optional extra: pip install torch)")

import dgen  # noqa: E402
import dgen.torch as dt  # noqa: E402
from dgen import Op  # noqa: E402


def _have_cc():
    try:
        from dgen.runtime.cc import find_compiler

        find_compiler()
        return True, ""
    except dgen.BackendUnavailable as e:
        return False, str(e)


HAVE_CC, WHY = _have_cc()
requires_cc = pytest.mark.skipif(not HAVE_CC, reason=f"no C compiler: {WHY}")


def onepole_gain(a=0.5, gain=0.7, instances=1):
    """input -> one-pole (feedback through a history cell) -> gain * (1 + phasor)."""
    g = dgen.Graph(sample_rate=1000)
    pa = dgen.Parameter(g, a, name="a")
    pg = dgen.Parameter(g, gain, name="gain")
    c = g.alloc()
    y = (1 - pa.node()) * g.input(0) + pa.node() * g.n(Op.history_read(c))
    g.n(Op.history_write(c), y)
    g.output(0, y * pg.node() * (1 + g.n(Op.phasor(g.alloc()), 37.0, 0.0)))
    return g


def f64(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape)).requires_grad_()


def test_import_dgen_does_not_import_torch():
    code = "import sys, dgen; assert 'torch' not in sys.modules, 'import dgen imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gradcheck_inputs_and_parameters_through_feedback():
    m = dt.DgenModule(onepole_gain(), backend="reference")
    a = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    gain = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, gain: m(x, a=a, gain=gain), (f64(1, 12), a, gain))


def test_gradcheck_batched_instances():
    """(B,) values train one copy per instance, () is shared (its gradient sums over instances)."""
    m = dt.DgenModule(onepole_gain(), backend="reference", instances=3)
    a = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    gain = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, gain: m(x, a=a, gain=gain), (f64(3, 1, 8), a, gain))


def test_batched_instances_match_single_runs():
    x = f64(3, 1, 32).detach()
    a = [0.2, 0.5, 0.9]
    m = dt.DgenModule(onepole_gain(a=a), backend="reference", instances=3)
    y = m(x)
    w = torch.linspace(-1, 1, 32, dtype=torch.float64)
    (y * w).sum().backward()
    assert m.params["a"].shape == (3,) and m.params["gain"].shape == ()
    gain_grad = 0.0
    for b in range(3):
        one = dt.DgenModule(onepole_gain(a=a[b]), backend="reference")
        yb = one(x[b])
        torch.testing.assert_close(y[b], yb)
        (yb * w).sum().backward()
        torch.testing.assert_close(m.params["a"].grad[b], one.params["a"].grad)
        gain_grad += one.params["gain"].grad
    torch.testing.assert_close(m.params["gain"].grad, gain_grad)


def test_synth_without_inputs_and_values_from_outside():
    """A patch with no inputs runs `frames` frames; a tensor computed elsewhere drives a parameter."""
    g = dgen.Graph(sample_rate=1000)
    f = dgen.Parameter(g, 50.0, name="freq")
    g.output(0, g.n(Op.sin, g.n(Op.phasor(g.alloc()), f.node(), 0.0) * (2 * np.pi)))
    m = dt.DgenModule(g, backend="reference")
    net_out = torch.tensor(61.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: m(frames=16, freq=f), (net_out,))
    assert m(frames=16).shape == (1, 16)


@requires_cc
def test_c_gradients_match_reference():
    x = f64(1, 200).detach()
    up = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 200)))
    got = {}
    for backend in ("reference", "c"):
        m = dt.DgenModule(onepole_gain(), backend=backend)
        xi = x.to(m.runner.torch_dtype, copy=True).requires_grad_()
        y = m(xi)
        assert y.dtype == (torch.float32 if backend == "c" else torch.float64)
        (y * up.to(y.dtype)).sum().backward()
        got[backend] = [t.double() for t in (y, xi.grad, m.params["a"].grad, m.params["gain"].grad)]
    for c, ref in zip(got["c"], got["reference"]):
        torch.testing.assert_close(c, ref, rtol=1e-4, atol=1e-5)


def test_adam_recovers_a_onepole_coefficient():
    x = f64(1, 256, seed=3).detach()
    target = dt.DgenModule(onepole_gain(a=0.85, gain=1.0), backend="reference")(x).detach()
    m = dt.DgenModule(onepole_gain(a=0.3, gain=1.0), backend="c" if HAVE_CC else "reference")
    m.params["gain"].requires_grad_(False)
    opt = torch.optim.Adam([m.params["a"]], lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(x.to(m.runner.torch_dtype)), target.to(m.runner.torch_dtype))
        loss.backward()
        opt.step()
    assert abs(m.params["a"].item() - 0.85) < 5e-3 and m.params["gain"].grad is None


def test_state_semantics():
    x = f64(1, 64).detach()
    m = dt.DgenModule(onepole_gain(), backend="reference")
    torch.testing.assert_close(m(x[:, :32]), m(x[:, :32]))  # each call starts from reset
    whole = m(x)
    m.stateful = True
    m.reset()
    first = m(x[:, :32])
    xb = x[:, 32:].clone().requires_grad_()
    second = m(xb)
    second.sum().backward()  # replays from the saved start state; the live state is kept
    third_start = m.program.forward.mem.copy()
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    m.reset()
    m(x)
    np.testing.assert_array_equal(m.program.forward.mem, third_start)


def test_clear_errors():
    m = dt.DgenModule(onepole_gain(), backend="reference")
    with pytest.raises(dgen.RunInputError, match=r"shape \(2, 8\); expected \(1, frames\)"):
        m(torch.zeros(2, 8))
    with pytest.raises(dgen.RunInputError, match="input channel"):
        m()
    with pytest.raises(dgen.RunInputError, match="device meta"):
        m(torch.zeros(1, 8, device="meta"))
    with pytest.raises(dgen.RunInputError, match=r"parameter 'a' has shape \(2,\)"):
        m(torch.zeros(1, 8), a=torch.zeros(2))
    with pytest.raises(dgen.RunInputError, match="unknown parameter"):
        m(torch.zeros(1, 8), q=torch.zeros(()))
    forward_only = dgen.compile(onepole_gain(), backend="reference", frame_count=8)
    with pytest.raises(dgen.GraphError, match="backwards=True"):
        dt.DgenModule(forward_only)
