"""Stateful ops and building blocks on the CUDA backend vs the float32 reference (the C
tests' graphs: oscillators, filters, dynamics, memory with extreme indices); instances equal
separate runs; streaming invariance; per-instance parameters; reset."""

import numpy as np
import pytest
from _csupport import FRAME_CHUNKS, assert_close, stream
from _cudasupport import CLOSE, EXACT, programs, requires_cuda
from test_c_state import GRAPHS, build, make_inputs

import dgen
from dgen import Op

pytestmark = requires_cuda
N = sum(FRAME_CHUNKS)


@pytest.mark.parametrize("instances", [1, 3, 130])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_blocks_match_reference(name, instances):
    g, tol = build(name)
    cu, ref = programs(g, frame_count=N, instances=instances)
    x = make_inputs(name, np.random.default_rng(1), instances, N)
    assert_close(stream(cu, x), stream(ref, x), what=name, **tol)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_instances_equal_separate_runs(name):
    g, _ = build(name)
    single = dgen.compile(g, backend="cuda", frame_count=N)
    x = make_inputs(name, np.random.default_rng(2), 19, N)
    alone = []
    for b in range(19):
        single.reset()
        alone.append(single.run(x[b]))
    alone = np.stack(alone)
    for B in (3, 19):
        many = dgen.compile(g, backend="cuda", frame_count=N, instances=B)
        # the same code per thread whatever B is: identical results
        np.testing.assert_array_equal(many.run(x[:B]), alone[:B])


@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_streaming_invariance(name, instances):
    g, _ = build(name)
    prog = dgen.compile(g, backend="cuda", frame_count=4096, instances=instances)
    x = make_inputs(name, np.random.default_rng(3), instances, 4096)
    whole = prog.run(x)
    prog.reset()
    parts = np.concatenate([prog.run(x[..., :1000]), prog.run(x[..., 1000:])], axis=-1)
    np.testing.assert_array_equal(parts, whole)


def test_parameters_per_instance():
    g = dgen.Graph()
    f = dgen.Parameter(g, value=[100.0, 200.0, 300.0, 400.0, 5000.0], name="f")
    gain = dgen.Parameter(g, value=0.5, name="gain")
    ph = g.n(Op.phasor(g.alloc()), f.node(), 0.0)
    g.output(0, g.n(Op.sin, ph * (2 * np.pi)) * gain.node())
    g.output(1, f.node() * 2.0 + gain.node())  # a uniform: computed once per kernel
    cu, ref = programs(g, frame_count=300, instances=5)
    assert_close(stream(cu), stream(ref), what="parameters", **CLOSE)
    f.value = [1.0, 2.0, 3.0, 4.0, 5.0]  # takes effect at the next run
    assert_close(cu.run(frames=10)[:, 1], np.repeat([[2.5], [4.5], [6.5], [8.5], [10.5]], 10, axis=1), **EXACT)


def test_reset_restores_initial_state():
    g = dgen.Graph()
    h, write = g.history(g.alloc(init=0.25))
    g.output(0, write(h + 1.0))
    prog = dgen.compile(g, backend="cuda", frame_count=5, instances=2)
    first = prog.run()
    prog.run()
    prog.reset()
    np.testing.assert_array_equal(prog.run(), first)
    np.testing.assert_array_equal(first[0, 0], [1.25, 2.25, 3.25, 4.25, 5.25])


def test_source_and_device_memory():
    g, _ = build("oscillators")
    prog = dgen.compile(g, backend="cuda", frame_count=64, instances=2)
    assert 'extern "C" __global__' in prog.source
    assert type(prog.mem).__module__.startswith("cupy")
    assert prog.mem.shape == (prog.plan.layout.size, 2)
