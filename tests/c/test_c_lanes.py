"""Instances in lanes: the code paths chosen per stage or per frame (docs/c_backend.md).

- memory ops: one contiguous vector when every lane holds the same index, per-lane accesses
  otherwise; both against the float32 reference, for all four memory ops;
- memory ops whose index depends only on constants and history cells: lanes checked once per
  call (the cells alike in every lane or not), indices in range and wrapped (negative, past the
  size, beyond int range);
- small frame loops interleave two instance groups per pass, with a plain loop for a group
  left over: instance counts giving 1 to 5 groups against the reference;
- sin of a phasor: a copy of the frame loop without the sin's range check runs while the
  phasors start in range; out of range (one lane: 1e6, 1e30, inf, NaN) the checked loop runs.
"""

import numpy as np
import pytest
from _csupport import CLOSE, assert_close, assert_ulps, programs, requires_cc, stream

import dgen
from dgen import Op

pytestmark = requires_cc

N = 300
EXACT = dict(rtol=0.0, atol=float(np.finfo(np.float32).tiny))  # up to flushed denormals


def memory_graph():
    """Every memory op on one cell, indices and values from inputs."""
    g = dgen.Graph()
    idx, val = g.input(0), g.input(1)
    buf = g.alloc(7)
    r, took = _every_memory_op(g, buf, idx, val)
    g.output(0, r)
    g.output(1, took)
    g.output(2, g.delay(val, 5.5, 9))  # a delay line: every lane writes one slot
    return g


def _every_memory_op(g, buf, idx, val):
    """write, read, accum and take on one cell, in that order: (the read, the take)."""
    w = g.n(Op.memory_write(buf), idx, val)
    r = g.seq(w, g.n(Op.memory_read(buf), idx + 3.0))
    acc = g.seq(r, g.n(Op.memory_accum(buf), idx + 1.0, val * 0.5))
    return r, g.seq(acc, g.n(Op.memory_take(buf), idx + 2.0))


def memory_inputs(rng, B, same_index):
    idx = np.floor(rng.uniform(-3, 12, (1 if same_index else B, N))).astype(np.float32)
    idx = np.broadcast_to(idx, (B, N)).copy()
    if not same_index:
        idx[:, ::7] = idx[0, ::7]  # some frames uniform anyway: both paths in one run
    val = rng.standard_normal((B, N)).astype(np.float32)
    return np.stack([idx, val], axis=1)


@pytest.mark.parametrize("same_index", [True, False])
def test_memory_ops_uniform_and_mixed_indices(same_index):
    B = 21
    c, ref = programs(memory_graph(), frame_count=N, instances=B)
    x = memory_inputs(np.random.default_rng(5), B, same_index)
    assert_close(stream(c, x, chunks=(1, 99, 200)), stream(ref, x, chunks=(1, 99, 200)), what="memory", **EXACT)


def alike_graph():
    """Memory ops indexed by a counter of constants: the same index in every lane once the
    counter's cell starts so. The indices run negative, past the size and beyond int range."""
    g = dgen.Graph()
    count, write = g.history()
    write(count + 1.0)
    idx, val = count * 0.75 - 5.0, g.input(0)
    buf = g.alloc(7)
    r, took = _every_memory_op(g, buf, idx, val)
    g.output(0, r)
    g.output(1, took)
    g.output(2, g.seq(took, g.n(Op.memory_read(buf), idx * 3e9)))
    return g, count.op.cell.id


@pytest.mark.parametrize("start", ["alike", "per instance", "one lane off"])
def test_memory_ops_alike_indices(start):
    B = 19
    g, cell = alike_graph()
    c, ref = programs(g, frame_count=N, instances=B)
    assert "DGEN_LANES_ALIKE_" in c.source and "dgen_lanes_m" not in c.source.split("stage functions")[-1]
    at = c.plan.layout.offsets[cell]
    counts = {"alike": np.full(B, 3.0), "per instance": np.arange(B) % 5, "one lane off": np.eye(1, B, 4)[0]}
    for prog in (c, ref):
        prog.mem[at] = counts[start]
    x = np.random.default_rng(7).standard_normal((B, 1, N)).astype(np.float32)
    assert_close(stream(c, x, chunks=(1, 99, 200)), stream(ref, x, chunks=(1, 99, 200)), what=start, **EXACT)


@pytest.mark.parametrize("B", [2, 9, 17, 33, 40, 80])
def test_interleaved_groups_match_reference(B):
    g = dgen.Graph()
    phase = g.n(Op.phasor(g.alloc()), g.input(0), 0.0)
    g.output(0, g.n(Op.sin, phase * 6.283185307179586))
    c, ref = programs(g, frame_count=N, instances=B)
    assert "g += 2" in c.source  # a small loop: two groups per pass
    freq = np.random.default_rng(B).uniform(20, 9000, (B, 1, N)).astype(np.float32)
    assert_close(
        stream(c, freq, chunks=(1, 99, 200)), stream(ref, freq, chunks=(1, 99, 200)), what="phasor sin", **CLOSE
    )


@pytest.mark.parametrize("start", [0.25, 1e6, 1e30, np.inf, np.nan])
def test_sin_of_a_phasor_in_and_out_of_range(start):
    B = 19  # one pass of two groups, one group left over
    g = dgen.Graph()
    cell = g.alloc()
    g.output(0, g.n(Op.sin, g.n(Op.phasor(cell), g.input(0), 0.0) * 6.283185307179586))
    g.output(1, g.n(Op.sin, g.input(0) * 0.001))  # not a phasor: no range proof
    c, ref = programs(g, frame_count=N, instances=B)
    stages = c.source.split("stage functions")[-1]
    assert "dgen_sin_core_(" in stages and "DGEN_LANES_WITHIN_(s" in stages  # a loop without the check
    for prog in (c, ref):
        prog.mem[c.plan.layout.offsets[cell.id], 5] = start
    freq = np.random.default_rng(3).uniform(20, 9000, (B, 1, N)).astype(np.float32)
    assert_ulps(stream(c, freq, chunks=(1, 99, 200)), stream(ref, freq, chunks=(1, 99, 200)), what=str(start))
