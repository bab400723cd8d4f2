"""Kernel fusion in the CUDA renderer (render/cuda_fuse.py): which chains are feed-forward,
which accumulators sum inside vector kernels and which vector blocks fold into their
neighbours (checked without a GPU), and on a GPU the fused kernels against the float32
reference, forwards and backwards, streamed over calls of frame counts shorter than the
delay chain, with the state carried across calls."""

import numpy as np
import pytest
from _csupport import assert_close
from _cudasupport import requires_cuda as _cuda_marks

import dgen
from dgen import Op
from dgen.analysis import SEQUENTIAL, VECTOR
from dgen.interp.reference import ReferenceKernel
from dgen.pipeline import plan
from dgen.render.cstyle import split_stages
from dgen.render.cuda import render_cuda
from dgen.render.cuda_fuse import MAX_DEPTH, fused_depth, kernel_units


def requires_cuda(test):
    for mark in _cuda_marks:
        test = mark(test)
    return test


def _units(g, reverse=False, reassociate=False):
    p = plan(g, expand=True, reverse=reverse)
    stages = [s.stage for s in split_stages(p.graph, p.schedule) if s.kind == "stage"]
    return p, [u for st in stages for u in kernel_units(p.graph, st, reassociate)]


def _delay_line(g, x, taps):
    """x delayed by 1..taps frames through a chain of history cells."""
    out = []
    for _ in range(taps):
        h, write = g.history()
        write(x)
        out.append(h)
        x = h
    return out


def _fir_and_one_pole():
    """A 3-tap FIR of an input (delay cells), a one-pole fed by a small vector expression of
    a second input, their sum, and two sums over frames (gradient accumulators): of a vector
    value and of the one-pole's output."""
    g = dgen.Graph()
    x, k = g.input(0), g.input(1)
    d1, d2, d3 = _delay_line(g, x, 3)
    fir = x * 0.5 + d1 * 0.25 - d2 * 0.125 + d3 * 2.0
    h, write = g.history()
    y = write(h * 0.9 + (k * 0.3 + 0.1) * 0.1)
    g.n(Op.grad_accum(g.alloc()), fir * x)
    g.n(Op.grad_accum(g.alloc()), y)
    g.output(0, fir + y)
    g.output(1, d3)
    return g


@pytest.mark.parametrize("reassociate", [False, True])
def test_delay_chains_and_accumulators_are_vector_and_loops_stay_sequential(reassociate):
    p, units = _units(_fir_and_one_pole(), reassociate=reassociate)
    if not reassociate:  # exact programs: the accumulator adds frame by frame, in a loop of its own
        assert [u.kind for u in units] == [VECTOR, SEQUENTIAL, VECTOR, SEQUENTIAL] and not any(u.accs for u in units)
        return
    assert [u.kind for u in units] == [VECTOR, SEQUENTIAL, VECTOR]
    delay_cells = {c for u in units for c in u.cells}
    assert len(delay_cells) == 3  # the FIR's cells; the one-pole's cell stays in its loop
    seq = next(u for u in units if u.kind == SEQUENTIAL)
    assert not delay_cells & {p.graph.nodes[n].op.cell.id for n in seq.nodes if p.graph.nodes[n].op.cell}
    # the accumulator of a vector value sums in a vector kernel; the one-pole's stays in its loop
    assert [len(u.accs) for u in units] == [0, 0, 1]
    assert "grad_accum" in {p.graph.nodes[n].op.name for n in seq.nodes}


@pytest.mark.parametrize("taps, fused", [(MAX_DEPTH, True), (MAX_DEPTH + 1, False)])
def test_delay_chains_deeper_than_max_depth_stay_sequential(taps, fused):
    g = dgen.Graph()
    g.output(0, _delay_line(g, g.input(0), taps)[-1])
    _, units = _units(g)
    assert any(u.cells for u in units) == fused
    assert any(u.kind == SEQUENTIAL for u in units) != fused


def test_delays_chained_through_vector_blocks_split_at_max_depth():
    """Each delay-then-gain is its own feed-forward chain; joined end to end they would reach
    20 frames back, so the kernels split where the depth would pass MAX_DEPTH."""
    g = dgen.Graph()
    x = g.input(0)
    for _ in range(20):
        h, write = g.history()
        write(x)
        x = h * 0.9
    g.output(0, x)
    p, units = _units(g)
    assert len(units) > 1 and sum(len(u.cells) for u in units) == 20
    assert all(fused_depth(p.graph, u.nodes) <= MAX_DEPTH for u in units)


def _accumulator_into_delay():
    """A sum over frames whose per-frame value also goes through a delay: the `_end` kernel
    recomputes it for the delay's end state and must not add it to the lane sums."""
    g = dgen.Graph()
    x = g.input(0)
    a = g.n(Op.grad_accum(g.alloc()), x * 2.0 + g.input(1))
    h, write = g.history()
    write(a * 3.0)
    g.output(0, h + x)
    return g


def test_end_kernel_recomputes_values_without_adding_to_sums():
    p = plan(_accumulator_into_delay(), expand=True)
    src = render_cuda(p.graph, p.schedule, p.layout, reassociate=True).source
    main, end = src.split("_end(")
    assert "float r0 = 0.0f;" in main and "r0 +=" in main and "r0" not in end


def test_feedback_through_a_cell_is_not_feed_forward():
    g = dgen.Graph()
    h, write = g.history()
    g.output(0, write(g.n(Op.tanh, h * 0.9 + g.input(0))))
    _, units = _units(g)
    assert [u.kind for u in units if u.kind == SEQUENTIAL] and not any(u.cells for u in units)


@pytest.mark.parametrize("also_output", [False, True])
def test_small_prologue_folds_into_the_sequential_unit_that_alone_reads_it(also_output):
    g = dgen.Graph()
    v = g.input(0) * 0.3 + 0.1  # a small vector expression
    h, write = g.history()
    g.output(0, write(h * 0.9 + v))
    if also_output:  # read outside the loop too: it stays a kernel of its own
        g.output(1, v)
    p, units = _units(g)
    seq = next(u for u in units if u.kind == SEQUENTIAL)
    folded = {n for n in seq.nodes if p.graph.nodes[n].op.name == "mul"}
    assert (len(folded) == 2) != also_output  # h * 0.9 always; x * 0.3 only when folded


@requires_cuda
@pytest.mark.parametrize("build", [_fir_and_one_pole, _accumulator_into_delay])
@pytest.mark.parametrize("scan", [False, True])  # True: scans, and accumulators summed per lane
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("instances", [1, 3])
def test_fused_kernels_match_reference_streamed(reverse, instances, scan, build):
    """Frame counts of 1 and 2 are shorter than the 3-deep delay chain: reads reach back into
    the previous call's state, and the end kernel's state comes partly from the start state."""
    import cupy as cp

    from dgen.runtime.cuda_program import CudaKernel

    p = plan(build(), expand=True, reverse=reverse)
    outs = [nd.id for nd in p.graph.outputs().values()]
    ref = ReferenceKernel(p.graph, p.schedule, p.layout, np.float32, reverse)
    kern = CudaKernel(p.graph, p.schedule, p.layout, np.float32, reverse, scan=scan)
    launches = [k for ls in kern.csource.launches.values() for k in ls]
    assert any(k.end for k in launches) and sum(k.accs for k in launches) == scan
    tol = 1e-4 if scan else 1e-6  # scans and per-lane sums round differently from the frame order
    mem, mem_r = cp.zeros((p.layout.size, instances), np.float32), np.zeros((p.layout.size, instances), np.float32)
    rng = np.random.default_rng(11)
    for frames in (700, 1, 2, 4099, 3, 64):
        x, k = (rng.standard_normal((frames, instances)).astype(np.float32) for _ in range(2))
        want = ref.execute(mem_r, frames, [x, k])
        got = kern.execute(mem, frames, [cp.asarray(x), cp.asarray(k)])
        for i in outs:
            assert_close(got[i].get(), want[i], rtol=tol, atol=tol, what=f"output {i}, {frames} frames")
        assert_close(mem.get(), mem_r, rtol=tol, atol=tol, what=f"state after {frames} frames")
