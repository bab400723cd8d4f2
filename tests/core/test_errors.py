"""Bad graphs and bad run() calls fail loudly and name the culprit (spec/api.md, spec/ops.md).

A graph error may be raised when the node is added or, at the latest, by dgen.compile; each test
therefore builds *and* compiles inside pytest.raises.
"""

import math
import operator
import re

import numpy as np
import pytest

import dgen
from dgen import Op

RUN_ERRORS = (dgen.GraphError, ValueError)


def nid(node):
    """The integer id of a node handle (api.md: g.n "appends one and returns its id/handle")."""
    for attr in ("id", "index", "idx"):
        v = getattr(node, attr, None)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return int(v)
    try:
        return operator.index(node)
    except TypeError:
        pytest.fail(f"cannot find the id of node handle {node!r} (tried .id, .index, int)")


def mentions_id(msg, i):
    return re.search(rf"(?<!\d){i}(?!\d)", msg) is not None


def build_and_compile(build):
    g = dgen.Graph()
    build(g)
    dgen.compile(g, backend="reference", frame_count=16)


def raises_graph_error(build):
    """Run build(g) then compile; return the GraphError message."""
    with pytest.raises(dgen.GraphError) as info:
        build_and_compile(build)
    return str(info.value)


def test_graph_error_is_an_exception_class():
    assert issubclass(dgen.GraphError, Exception)


# ---------------------------------------------------------------------------------------------
# wrong input count
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "op_name,make_op,n_inputs",
    [
        ("add", lambda g: Op.add, 1),
        ("add", lambda g: Op.add, 3),
        ("mul", lambda g: Op.mul, 0),
        ("sin", lambda g: Op.sin, 2),
        ("gswitch", lambda g: Op.gswitch, 2),
        ("mix", lambda g: Op.mix, 4),
        ("phasor", lambda g: Op.phasor(g.alloc()), 1),
        ("latch", lambda g: Op.latch(g.alloc()), 3),
        ("history_read", lambda g: Op.history_read(g.alloc()), 1),
        ("history_write", lambda g: Op.history_write(g.alloc()), 0),
        ("memory_write", lambda g: Op.memory_write(g.alloc(size=4)), 1),
        ("output", lambda g: Op.output(0), 0),
        ("constant", lambda g: Op.constant(1.0), 1),
    ],
)
def test_wrong_input_count(op_name, make_op, n_inputs):
    state = {}

    def build(g):
        x = g.n(Op.input(0))
        last = g.n(Op.sin, x)
        state["expected_id"] = nid(last) + 1  # the bad node is the next one appended
        op = make_op(g)
        g.n(op, *([last] * n_inputs))

    msg = raises_graph_error(build)
    assert op_name in msg, msg
    assert mentions_id(msg, state["expected_id"]), msg
    assert "input" in msg.lower(), msg


def test_accum_takes_two_or_four_inputs():
    # spec: "accum(c) | incr, reset, [min, max]" -- min and max come together; 3 inputs is wrong
    def build(g):
        g.n(Op.output(0), g.n(Op.accum(g.alloc()), 1.0, 0.0, 0.5))

    msg = raises_graph_error(build)
    assert "accum" in msg, msg


def test_wrong_input_count_message_names_counts():
    def build(g):
        x = g.n(Op.input(0))
        g.n(Op.output(0), g.n(Op.add, x))

    msg = raises_graph_error(build)
    assert "add" in msg and "2" in msg and "1" in msg, msg


# ---------------------------------------------------------------------------------------------
# foreign nodes, unknown ops, bad constants
# ---------------------------------------------------------------------------------------------
def test_node_from_another_graph():
    other = dgen.Graph()
    foreign = other.n(Op.input(0))

    def build(g):
        x = g.n(Op.input(0))
        g.n(Op.output(0), g.n(Op.add, x, foreign))

    msg = raises_graph_error(build)
    assert "add" in msg or "input" in msg, msg
    assert "graph" in msg.lower(), msg


def test_node_from_another_graph_as_output():
    other = dgen.Graph()
    foreign = other.n(Op.sin, other.n(Op.input(0)))

    def build(g):
        g.n(Op.output(0), foreign)

    raises_graph_error(build)


@pytest.mark.parametrize("bad_op", ["foo", object(), 42, None])
def test_unknown_op(bad_op):
    def build(g):
        x = g.n(Op.input(0))
        g.n(Op.output(0), g.n(bad_op, x))

    msg = raises_graph_error(build)
    if isinstance(bad_op, str):
        assert "foo" in msg, msg
    assert "op" in msg.lower(), msg


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_constant(value):
    def build(g):
        g.n(Op.output(0), g.n(Op.constant(value)))

    msg = raises_graph_error(build)
    assert "constant" in msg, msg


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_plain_number_input(value):
    # a plain number as an input becomes a constant -- so it must be finite too
    def build(g):
        x = g.n(Op.input(0))
        g.n(Op.output(0), g.n(Op.mul, x, value))

    msg = raises_graph_error(build)
    assert "constant" in msg or "mul" in msg, msg


# ---------------------------------------------------------------------------------------------
# cells
# ---------------------------------------------------------------------------------------------
def test_two_history_writes_to_one_cell():
    state = {}

    def build(g):
        c = g.alloc()
        x = g.n(Op.input(0))
        y = g.n(Op.sin, x)
        w1 = g.n(Op.history_write(c), x)
        state["w1"] = nid(w1)
        state["w2"] = nid(w1) + 1
        g.n(Op.history_write(c), y)
        g.n(Op.output(0), g.n(Op.history_read(c)))

    msg = raises_graph_error(build)
    assert "history_write" in msg, msg
    # spec: "Two history_write nodes to one cell ... are errors that name the nodes involved"
    assert mentions_id(msg, state["w1"]) and mentions_id(msg, state["w2"]), msg


@pytest.mark.parametrize("second", ["phasor", "accum", "latch"])
def test_one_cell_used_by_two_stateful_ops(second):
    def build(g):
        c = g.alloc()
        p = g.n(Op.phasor(c), 440.0, 0.0)
        if second == "phasor":
            q = g.n(Op.phasor(c), 220.0, 0.0)
        elif second == "accum":
            q = g.n(Op.accum(c), 1.0, 0.0)
        else:
            q = g.n(Op.latch(c), 1.0, 1.0)
        g.n(Op.output(0), g.n(Op.add, p, q))

    msg = raises_graph_error(build)
    assert "phasor" in msg or second in msg, msg


# ---------------------------------------------------------------------------------------------
# spectral loss window size
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("W", [0, 1, 2, 3, 6, 12, 100, -4, -8])
def test_spectral_loss_window_must_be_power_of_two_at_least_4(W):
    def build(g):
        a = g.n(Op.input(0))
        b = g.n(Op.input(1))
        g.n(Op.output(0), g.spectral_loss(a, b, window_size=W))

    msg = raises_graph_error(build)
    assert str(W) in msg, msg
    assert "window" in msg.lower() or "spectral" in msg.lower(), msg


@pytest.mark.parametrize("W", [4, 8, 256])
def test_spectral_loss_valid_windows_compile(W):
    g = dgen.Graph()
    g.n(Op.output(0), g.spectral_loss(g.n(Op.input(0)), g.n(Op.input(1)), window_size=W))
    dgen.compile(g, backend="reference", frame_count=16)


# ---------------------------------------------------------------------------------------------
# run() arguments
# ---------------------------------------------------------------------------------------------
def two_channel_prog(N=32):
    g = dgen.Graph()
    g.n(Op.output(0), g.n(Op.add, g.n(Op.input(0)), g.n(Op.input(1))))
    return dgen.compile(g, backend="reference", frame_count=N)


def test_run_accepts_correct_shape():
    prog = two_channel_prog()
    y = np.asarray(prog.run(inputs=np.ones((2, 32)), frames=32))
    assert y.shape == (1, 32)
    assert np.all(y == 2.0)


@pytest.mark.parametrize("shape", [(1, 32), (3, 32)])
def test_run_wrong_channel_count(shape):
    prog = two_channel_prog()
    with pytest.raises(RUN_ERRORS) as info:
        prog.run(inputs=np.ones(shape), frames=32)
    msg = str(info.value)
    assert "2" in msg, msg  # names the expected channel count
    assert "shape" in msg.lower() or "channel" in msg.lower(), msg


@pytest.mark.parametrize("shape", [(32,), (2, 2, 32), (1, 1, 2, 32)])
def test_run_wrong_number_of_dims(shape):
    prog = two_channel_prog()
    with pytest.raises(RUN_ERRORS) as info:
        prog.run(inputs=np.ones(shape), frames=32)
    msg = str(info.value)
    assert "shape" in msg.lower() or "dim" in msg.lower(), msg


@pytest.mark.parametrize("frames", [0, -1, -100])
def test_run_non_positive_frames(frames):
    g = dgen.Graph()
    g.n(Op.output(0), g.n(Op.phasor(g.alloc()), 440.0, 0.0))
    prog = dgen.compile(g, backend="reference", frame_count=32)
    with pytest.raises(RUN_ERRORS) as info:
        prog.run(inputs=None, frames=frames)
    assert "frame" in str(info.value).lower(), str(info.value)


@pytest.mark.parametrize("frame_count", [0, -5])
def test_compile_non_positive_frame_count(frame_count):
    g = dgen.Graph()
    g.n(Op.output(0), g.n(Op.constant(1.0)))
    with pytest.raises(RUN_ERRORS):
        dgen.compile(g, backend="reference", frame_count=frame_count)
