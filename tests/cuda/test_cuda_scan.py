"""Chunked scans of affine sequential blocks (render/cuda_scan.py): which blocks qualify
(checked without a GPU), and on a GPU the scanned kernels against the frame-by-frame loop
and the float32 reference, forwards and backwards, for frame counts that do not divide into
chunks, with the state carried across calls."""

import numpy as np
import pytest
from _csupport import assert_close
from _cudasupport import requires_cuda as _cuda_marks
from test_c_adjoint import training_graph
from test_cuda_adjoint import biquad_fit

import dgen
from dgen import Op
from dgen.interp.reference import ReferenceKernel
from dgen.pipeline import plan
from dgen.render.cuda import render_cuda


def requires_cuda(test):
    for mark in _cuda_marks:
        test = mark(test)
    return test


def _sequential_launches(g, reverse=False):
    p = plan(g, expand=True, reverse=reverse)
    src = render_cuda(p.graph, p.schedule, p.layout, reverse)
    return [k for ls in src.launches.values() for k in ls if k.kind == "sequential"]


def test_affine_blocks_qualify_and_nonlinear_ones_do_not():
    g = dgen.Graph()  # one-pole: y = 0.9 y1 + 0.1 x, and a biquad
    h, write = g.history()
    g.output(0, write(h * 0.9 + g.input(0) * 0.1))
    g.output(1, g.biquad(g.input(0), 800.0, 0.7, 1.0, 0.0))
    assert [k.scan for k in _sequential_launches(g)] and all(k.scan > 0 for k in _sequential_launches(g))

    for build in (
        lambda g, x: g.n(Op.phasor(g.alloc()), x, 0.0),  # frac: not affine
        lambda g, x: g.delay(x, 3.0, 8),  # memory cells: not in registers
        lambda g, x: _tanh_loop(g, x),
    ):  # tanh of the state
        g = dgen.Graph()
        g.output(0, build(g, g.input(0)))
        assert all(k.scan == 0 for k in _sequential_launches(g))


def _source(g, reverse=False):
    p = plan(g, expand=True, reverse=reverse)
    return render_cuda(p.graph, p.schedule, p.layout, reverse).source


def test_time_invariant_maps_are_powered_and_time_varying_ones_are_run():
    """A fixed biquad's chunk map is A^L by squaring (pass 1 runs the chunk once); a
    coefficient read from an input every frame needs the k unit-state runs."""
    g = dgen.Graph()
    g.output(0, g.biquad(g.input(0), 800.0, 0.7, 1.0, 0.0))
    fixed, scanned = _source(g), len(_sequential_launches(g))
    assert scanned and fixed.count("float A[") == scanned
    assert _scan_runs(fixed) == 2 * scanned  # per block: one pass-1 run, pass 3
    varying = _source(_one_pole_bank())  # one block of 3 cells
    assert "float A[" not in varying and _scan_runs(varying) == (1 + 3) + 1


def _scan_runs(source):
    """Chunk runs of the scan kernels."""
    return source.count("for (int t = c * chunk,")


def _tanh_loop(g, x):
    h, write = g.history()
    return write(g.n(Op.tanh, h * 0.9 + x))


def _one_pole_bank():
    """Two one-poles and a product of one with an input (per-frame coefficient): 3 cells."""
    g = dgen.Graph()
    x, k = g.input(0), g.input(1)
    h1, w1 = g.history()
    y1 = w1(h1 * 0.97 + x * 0.03)
    h2, w2 = g.history()
    y2 = w2(h2 * k + y1)  # time-varying coefficient from an input
    h3, w3 = g.history()
    w3(y2)  # a pure one-frame delay
    g.output(0, y2 + h3)
    return g


@requires_cuda
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("instances", [1, 5])
def test_scanned_kernel_matches_loop_and_reference(reverse, instances):
    import cupy as cp

    from dgen.runtime.cuda_program import CudaKernel, scan_chunk

    g = _one_pole_bank()
    p = plan(g, expand=True, reverse=reverse)
    outs = [nd.id for nd in p.graph.outputs().values()]
    ref = ReferenceKernel(p.graph, p.schedule, p.layout, np.float32, reverse)
    kernels = {s: CudaKernel(p.graph, p.schedule, p.layout, np.float32, reverse, scan=s) for s in (False, True)}
    mems = {s: cp.zeros((p.layout.size, instances), np.float32) for s in kernels}
    mem_r = np.zeros((p.layout.size, instances), np.float32)
    rng = np.random.default_rng(5)
    scanned = []
    for frames in (1000, 4099, 200):  # chunks of uneven length; state carried between calls
        scanned.append(scan_chunk(frames, instances, 3) < frames)  # 3 cells; 200 frames: the loop
        x = rng.standard_normal((frames, instances)).astype(np.float32)
        k = rng.uniform(0.5, 0.95, (frames, instances)).astype(np.float32)
        want = ref.execute(mem_r, frames, [x, k])
        got = {s: kern.execute(mems[s], frames, [cp.asarray(x), cp.asarray(k)]) for s, kern in kernels.items()}
        for i in outs:
            assert_close(got[False][i].get(), want[i], rtol=1e-6, atol=1e-6, what=f"loop, {frames} frames")
            assert_close(got[True][i].get(), want[i], rtol=1e-4, atol=1e-4, what=f"scan, {frames} frames")
        assert_close(mems[True].get(), mem_r, rtol=1e-4, atol=1e-4, what=f"state after {frames} frames")
    assert scanned == [True, True, False]


@requires_cuda
@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("build", [biquad_fit, training_graph], ids=["biquad", "delay-biquad-spectral"])
def test_scanned_training_matches_loop(build, instances):
    """Losses and gradients with scans (the default) vs without: the same up to rounding."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((instances, 1, 4096)).astype(np.float32)
    results = []
    for scan in (True, False):
        g, params, loss = build(instances)
        prog = dgen.compile(g, backend="cuda", frame_count=4096, backwards=True, instances=instances, scan=scan)
        inputs = x if prog.forward.n_inputs else None
        value, grads = prog.forward_backward(loss, inputs)
        results.append((value, [grads[p] for p in params]))
        if scan:
            gr = prog.lean(loss)  # the kernels a training step runs
            kinds = [k.scan for k in (*_launches(gr.forward_kernel), *_launches(gr.backward_kernel))]
            assert any(kinds), "no block of this training program was scanned"
    (ls, gs), (ll, gl) = results
    assert_close(ls, ll, rtol=1e-5, atol=0, what="loss")
    for a, b in zip(gs, gl):
        assert_close(a, b, rtol=1e-3, atol=1e-4 * np.abs(b).max(), what="gradient")


def _launches(kernel):
    return [k for ls in kernel.csource.launches.values() for k in ls]


@requires_cuda
def test_forward_program_scans_only_when_asked():
    """Forward-only programs keep the exact loop by default; scan=True gives the same signal up
    to rounding, streamed over calls."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 8192)).astype(np.float32)
    runs = {}
    for scan in (None, True):
        g = _one_pole_bank()
        kw = {} if scan is None else {"scan": True}
        prog = dgen.compile(g, backend="cuda", frame_count=4096, **kw)
        k = np.full((1, 1, 4096), 0.9, np.float32)
        runs[scan] = np.concatenate(
            [prog.run(np.concatenate([x[:, :, i : i + 4096], k], axis=1)) for i in (0, 4096)], axis=-1
        )
        assert prog.kernel.scan == (scan is True)
    ref = dgen.compile(_one_pole_bank(), backend="reference", frame_count=4096, dtype=np.float32)
    k = np.full((1, 1, 4096), 0.9, np.float32)
    want = np.concatenate([ref.run(np.concatenate([x[:, :, i : i + 4096], k], axis=1)) for i in (0, 4096)], axis=-1)
    assert_close(runs[None], want, rtol=1e-6, atol=1e-6, what="loop")
    assert_close(runs[True], want, rtol=1e-4, atol=1e-4, what="scan")
