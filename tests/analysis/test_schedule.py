"""Feedback detection, ordering and block scheduling on small graphs, with golden dumps."""

from __future__ import annotations

import math

import pytest

import dgen
from dgen import Op
from dgen.analysis import dependencies, find_feedback, order, schedule_blocks
from dgen.pipeline import plan


def _analyse(g):
    deps = dependencies(g)
    fb = find_feedback(g, deps)
    return fb, schedule_blocks(g, deps, fb)


def test_one_pole_loop_is_one_sequential_cluster():
    g = dgen.Graph()
    x = g.input(0)  # 0
    prev, write = g.history()  # 1
    y = write(0.1 * x + 0.9 * prev)  # 2..6
    g.output(0, y)
    fb, sched = _analyse(g)
    assert len(fb.clusters) == 1 and fb.loops == (0,)
    assert {g.nodes[i].op.name for i in fb.clusters[0]} >= {"history_read", "history_write", "add"}
    kinds = [b.kind for b in sched.blocks]
    assert kinds == ["vector", "sequential", "vector"]
    assert "output" == g.nodes[sched.blocks[-1].nodes[-1]].op.name


def test_delay_line_without_feedback_is_a_cluster_but_not_a_loop():
    g = dgen.Graph()
    y = g.delay(g.input(0), 3.5, max_delay=8)
    g.output(0, y)
    fb, sched = _analyse(g)
    assert len(fb.clusters) == 1 and fb.loops == ()
    seq = [b for b in sched.blocks if b.kind == "sequential"]
    # every node touching the delay's memory cell runs in one frame loop
    mem_nodes = {nd.id for nd in g.nodes if nd.op.name.startswith("memory")}
    assert sum(1 for b in seq if mem_nodes & set(b.nodes)) == 1
    assert any(mem_nodes <= set(b.nodes) for b in seq)


def test_independent_sequential_chains_are_listed_for_interleaving():
    g = dgen.Graph()
    a = g.n(Op.phasor(g.alloc()), 100.0, 0.0)
    b = g.n(Op.phasor(g.alloc()), 200.0, 0.0)
    g.output(0, a + b)
    _, sched = _analyse(g)
    (seq,) = [b for b in sched.blocks if b.kind == "sequential"]
    assert len(seq.chains) == 2 and sorted(len(c) for c in seq.chains) == [1, 1]


def test_stateless_neighbours_fuse_into_one_vector_block():
    g = dgen.Graph()
    x = g.input(0)
    y = g.n(Op.sin, x * 2.0) + g.n(Op.cos, x) * 0.5 - 1.0
    g.output(0, g.n(Op.tanh, y))
    _, sched = _analyse(g)
    assert [b.kind for b in sched.blocks] == ["vector"]


def test_history_read_runs_before_the_write_of_its_cell_even_if_built_later():
    g = dgen.Graph()
    cell = g.alloc()
    w = g.n(Op.history_write(cell), g.input(0))
    r = g.n(Op.history_read(cell))
    g.output(0, r + w)
    ordered = order(g, dependencies(g))
    assert ordered.index(r.id) < ordered.index(w.id)
    out = dgen.compile(g, backend="reference", frame_count=4).run([[1.0, 2.0, 3.0, 4.0]])
    assert out.tolist() == [[1.0, 3.0, 5.0, 7.0]]  # x[n] + x[n-1]


def test_seq_orders_a_memory_write_before_a_read_of_the_same_frame():
    g = dgen.Graph()
    buf = g.alloc(4)
    read = g.n(Op.memory_read(buf), 2.0)
    write = g.n(Op.memory_write(buf), 2.0, g.input(0))
    g.output(0, g.seq(write, read))
    ordered = order(g, dependencies(g))
    assert ordered.index(write.id) < ordered.index(read.id)
    out = dgen.compile(g, backend="reference", frame_count=3).run([[5.0, 6.0, 7.0]])
    assert out.tolist() == [[5.0, 6.0, 7.0]]


def test_algebraic_loop_through_a_placeholder_names_its_nodes():
    g = dgen.Graph()
    fb = g.placeholder("fb")
    y = g.input(0) + fb * 0.5
    g.bind(fb, y)
    g.output(0, y)
    with pytest.raises(dgen.AlgebraicLoopError, match=r"node \d+ \(mul\).*node \d+ \(add\)"):
        dgen.compile(g, backend="reference", frame_count=8)


def test_placeholder_loop_through_a_history_cell_is_fine():
    g = dgen.Graph()
    fb = g.placeholder()
    prev, write = g.history()
    y = write(g.input(0) + 0.5 * prev)
    g.bind(fb, y)
    g.output(0, fb)
    out = dgen.compile(g, backend="reference", frame_count=4).run([[1.0, 0.0, 0.0, 0.0]])
    assert out.tolist() == [[1.0, 0.5, 0.25, 0.125]]


def test_unbound_placeholder_is_an_error():
    g = dgen.Graph()
    p = g.placeholder()
    g.output(0, p + 1.0)
    with pytest.raises(dgen.GraphError, match=rf"node {p.id} \(placeholder\).*never bound"):
        dgen.compile(g, backend="reference", frame_count=8)


def test_order_edges_forming_a_cycle_are_an_algebraic_loop():
    g = dgen.Graph()
    a = g.n(Op.sin, g.input(0))
    b = g.n(Op.cos, a)
    g.order_edges.append((b.id, a.id))
    g.output(0, b)
    with pytest.raises(dgen.AlgebraicLoopError, match=r"node 1 \(sin\)"):
        dgen.compile(g, backend="reference", frame_count=8)


def test_buffer_op_inside_a_feedback_loop_is_refused():
    g = dgen.Graph()
    prev, write = g.history()
    loss = g.spectral_loss(g.input(0) + prev, g.input(0), 4)
    write(loss * 0.1)
    g.output(0, loss)
    with pytest.raises(dgen.GraphError, match=r"spectral_loss.*feedback"):
        dgen.compile(g, backend="reference", frame_count=8)


SEED_SCHEDULE = """\
schedule: 5 block(s)
  block 0 vector (8 nodes)
    0:constant(0.0), 1:constant(6.283185307179586), 2:constant(237.0), 6:constant(8.5), 9:constant(300.0), \
13:constant(10.0), 17:constant(100.0), 20:constant(0.003)
  block 1 sequential (4 nodes)
    chain 0: 3:phasor(cell=0)
    chain 1: 7:phasor(cell=1)
    chain 2: 10:phasor(cell=2)
    chain 3: 14:phasor(cell=3)
  block 2 vector (8 nodes)
    4:mul, 5:sin, 8:mul, 11:mul, 12:sin, 15:mul, 19:mse, 21:mul
  block 3 buffer (1 nodes)
    16:spectral_loss(64, 1, cell=4)
  block 4 vector (3 nodes)
    18:mul, 22:add, 23:output(0)"""


def _seed_graph():
    g = dgen.Graph()
    reset, two_pi = g.constant(0.0), g.constant(2 * math.pi)
    s1 = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 237.0, reset) * two_pi) * g.n(Op.phasor(g.alloc()), 8.5, reset)
    s2 = g.n(Op.sin, g.n(Op.phasor(g.alloc()), 300.0, reset) * two_pi) * g.n(Op.phasor(g.alloc()), 10.0, reset)
    g.output(0, g.spectral_loss(s1, s2, 64) * 100.0 + 0.003 * g.n(Op.mse, s1, s2))
    return g


def test_seed_graph_schedule_golden():
    g = _seed_graph()
    p = plan(g, expand=False)
    text = p.schedule.dump(p.graph)
    assert text.replace("\n", "").replace(" ", "") == SEED_SCHEDULE.replace("\n", "").replace(" ", "")


def test_debug_env_prints_every_stage(monkeypatch, capsys):
    monkeypatch.setenv("DGEN_DEBUG", "1")
    plan(_seed_graph(), expand=True)
    text = capsys.readouterr().out
    for stage in ("expand", "feedback", "schedule", "layout"):
        assert f"--- {stage}" in text
