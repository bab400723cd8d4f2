"""run(inputs, frames, out=array): the result written into the caller's array, equal to what
run() returns, with clear errors for an array of the wrong shape, dtype or layout."""

from __future__ import annotations

import numpy as np
import pytest

import dgen
from dgen import Op
from dgen.errors import RunInputError

from ._csupport import requires_cc


def _graph():
    """Two outputs (channel 1 unwritten), one read again by another node, one input."""
    g = dgen.Graph(sample_rate=44100)
    x = g.n(Op.input(0))
    ph = g.n(Op.phasor(g.alloc()), g.n(Op.add, x, 300.0), 0.0)
    o = g.n(Op.output(0), ph)
    g.n(Op.output(2), g.n(Op.mul, o, x))
    return g


def _inputs(B, frames, seed=0):
    x = np.random.default_rng(seed).uniform(-50, 50, (B, 1, frames)).astype(np.float32)
    return x[0] if B == 1 else x


def _backends():
    return [pytest.param("c", marks=requires_cc), "reference"]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("B", [1, 3, 16])
def test_out_equals_run_and_keeps_state(backend, B):
    frames = 300
    a = dgen.compile(_graph(), backend=backend, frame_count=frames, instances=B)
    b = dgen.compile(_graph(), backend=backend, frame_count=frames, instances=B)
    shape = (3, frames) if B == 1 else (B, 3, frames)
    out = np.full(shape, np.nan, a.dtype)  # garbage where no output node writes
    for call in range(3):
        x = _inputs(B, frames, call)
        want = a.run(x)
        got = b.run(x, out=out)
        assert got is out
        np.testing.assert_array_equal(got, want)
    assert not np.any(out[..., 1, :])


@requires_cc
def test_out_with_frames_other_than_frame_count():
    prog = dgen.compile(_graph(), backend="c", frame_count=64, instances=8)
    out = np.empty((8, 3, 1000), np.float32)
    ref = dgen.compile(_graph(), backend="c", frame_count=64, instances=8)
    x = _inputs(8, 1000)
    np.testing.assert_array_equal(prog.run(x, 1000, out=out), ref.run(x, 1000))


@pytest.mark.parametrize("backend", _backends())
def test_out_errors_name_the_problem(backend):
    prog = dgen.compile(_graph(), backend=backend, frame_count=100, instances=2)
    x = _inputs(2, 100)
    dt = prog.dtype
    cases = [
        (np.empty((2, 2, 100), dt), "shape"),
        (np.empty((3, 100), dt), "shape"),
        (np.empty((2, 3, 100), np.float16), "dtype"),
        (np.empty((2, 3, 200), dt)[..., ::2], "C-contiguous"),
        ([[0.0] * 100] * 3, "NumPy array"),
    ]
    for out, word in cases:
        with pytest.raises(RunInputError, match=word):
            prog.run(x, out=out)
    ro = np.empty((2, 3, 100), dt)
    ro.flags.writeable = False
    with pytest.raises(RunInputError, match="writeable"):
        prog.run(x, out=ro)


@requires_cc
def test_out_overlapping_inputs_is_refused():
    g = dgen.Graph()
    g.n(Op.output(0), g.n(Op.mul, g.n(Op.input(0)), 2.0))
    prog = dgen.compile(g, backend="c", frame_count=16)
    buf = np.ones((1, 16), np.float32)
    with pytest.raises(RunInputError, match="overlaps"):
        prog.run(buf, out=buf)


@pytest.mark.parametrize("backend", _backends())
def test_training_program_run_takes_out(backend):
    """A program compiled with backwards=True runs forward like the plain one, out= included."""
    g = _graph()
    p = dgen.Parameter(g, 0.5, name="gain")
    g.n(Op.output(1), g.n(Op.mul, g.n(Op.input(0)), p.node()))
    plain = dgen.compile(g, backend=backend, frame_count=64)
    training = dgen.compile(g, backend=backend, frame_count=64, backwards=True)
    x = _inputs(1, 64)
    out = np.empty((3, 64), plain.dtype)
    assert training.run(x, out=out) is out
    np.testing.assert_array_equal(out, plain.run(x))
