"""The CUDA backend on any machine: the source renders without a GPU, and compile() says what
is missing when CuPy or a GPU is not there."""

import math

import numpy as np
import pytest
from _cudasupport import HAVE_CUDA

import dgen
from dgen import Op
from dgen.ops import REGISTRY
from dgen.render.cuda import CudaRenderer, render_cuda


def seed_graph():
    g = dgen.Graph()
    f = dgen.Parameter(g, 237.0, name="f")
    y = g.n(Op.sin, g.n(Op.phasor(g.alloc()), f.node(), 0.0) * (2 * math.pi))
    y = g.biquad(g.delay(y, g.input(0), 8), 2000.0, 0.7, 1.0, 0.0)
    g.output(0, y)
    return g


def test_generate_renders_kernels_without_a_gpu():
    src = dgen.generate(seed_graph(), backend="cuda")
    assert 'extern "C" __global__ void dgen_stage0_b0' in src
    assert "sf_mread" in src and "const int i = (t + k);" in src  # delay line, sequential frame tiles
    assert "__restrict__" in src and "#include" not in src  # NVRTC: no host headers


def test_backward_graph_loops_frames_in_reverse():
    g = seed_graph()
    ref = dgen.compile(g, backend="reference", frame_count=16, backwards=True)
    grad = ref.output_gradient()
    bp = grad.backward_plan
    src = render_cuda(bp.graph, bp.schedule, bp.layout, bp.reverse).source
    assert "const int i = frames - 1 - (t + k);" in src


def test_every_registered_op_renders_or_is_handled():
    allowed = {"source", "pure", "state", "buffer", "expanded", "resolved"}
    for name, cls in REGISTRY.items():
        assert CudaRenderer.renders(cls) in allowed, f"no CUDA rendering for op {name!r}"


def test_unrenderable_op_is_named():
    from dgen.ops import Stateful

    class Mystery(Stateful):
        name, arity = "mystery", 1

    g = dgen.Graph()
    g.output(0, g.n(Mystery(g.alloc()), g.input(0)))
    with pytest.raises(NotImplementedError, match="no CUDA rendering for op 'mystery'"):
        dgen.generate(g, backend="cuda")


@pytest.mark.skipif(HAVE_CUDA, reason="CuPy and a GPU are present")
def test_compile_without_cuda_says_what_is_missing():
    g = dgen.Graph()
    g.output(0, g.n(Op.sin, g.input(0)))
    with pytest.raises(dgen.BackendUnavailable, match="CuPy|GPU") as e:
        dgen.compile(g, backend="cuda", frame_count=8)
    assert "CUDA backend" in str(e.value)
    with pytest.raises(dgen.BackendUnavailable):
        dgen.compile(g, backend="cuda", frame_count=8, backwards=True)


def test_float_literals_are_exact():
    g = dgen.Graph()
    g.output(0, g.input(0) * 0.1 + 1e39)  # beyond float32: INFINITY
    src = dgen.generate(g, backend="cuda")
    assert "0.1f" in src and "INFINITY" in src
    assert np.float32(0.1) == np.float32(float("0.1"))
