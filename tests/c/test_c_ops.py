"""Every pure op on the C backend vs the float32 reference, driven by the op registry: a new
op is covered without touching this file. Each op runs in the three places the renderer
puts it: a vector block, a sequential block (inside a feedback loop, scalar sf_ code with
one instance) and as a per-call uniform (constant operands), with one instance (frames in
lanes) and with three (instances in lanes), over odd frame counts."""

import numpy as np
import pytest
from _csupport import EXACT, FRAME_CHUNKS, assert_close, assert_ulps, programs, requires_cc, stream

import dgen
from dgen import Op
from dgen.ops import REGISTRY, Pure, Stateful
from dgen.render.c import CRenderer

pytestmark = requires_cc

# Correctly rounded or exact in both C and NumPy: compared bit for bit (up to flushed
# denormals). Every other op (transcendentals) within a few ulp.
EXACT_OPS = {
    "add",
    "sub",
    "mul",
    "div",
    "abs",
    "sign",
    "floor",
    "ceil",
    "round",
    "min",
    "max",
    "gt",
    "lt",
    "gte",
    "lte",
    "eq",
    "gswitch",
    "selector",
    "seq",
    "mix",
    "mse",
    "mod",
    "sqrt",
}
EXACT_TOL = dict(rtol=0.0, atol=float(np.finfo(np.float32).tiny))
assert EXACT["rtol"] == 0
PURE_OPS = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, Pure))
N = sum(FRAME_CHUNKS)
SPECIAL = np.array(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.5,
        -2.5,
        1.5,
        np.inf,
        -np.inf,
        np.nan,
        1e30,
        -1e30,
        3.4e38,
        1e-30,
        np.pi / 2,
        100.0,
        -7.0,
        3.0,
    ],
    np.float32,
)


def n_inputs(cls) -> int:
    lo, hi = (cls.arity, cls.arity) if isinstance(cls.arity, int) else cls.arity
    return lo if hi == lo else lo + 2


def signals(rng, channels, frames):
    """Random values at several scales with special values sprinkled in."""
    scale = rng.choice([1.0, 0.9, 4.0, 100.0], size=(channels, frames))
    x = (rng.standard_normal((channels, frames)) * scale).astype(np.float32)
    mask = rng.random((channels, frames)) < 0.25
    x[mask] = rng.choice(SPECIAL, size=mask.sum())
    with np.errstate(over="ignore"):
        x[0, ::13] = np.round(x[0, ::13] * 2) / 2  # halves and integers for round/floor/selector
    return x


def build(context):
    """One graph, one output per pure op; operands depend on the context."""
    g = dgen.Graph()
    names = []
    for name in PURE_OPS:
        cls = REGISTRY[name]
        k = n_inputs(cls)
        if context == "uniform":
            for combo in ([0.7, -2.5, 3.0, 1.5, 2.0], [-0.3, 0.25, -1.0, 0.0, 4.0], [1e30, -1e-3, 2.0, 0.5, 1.0]):
                x = g.n(getattr(Op, name), *(g.constant(v) for v in combo[:k]))
                g.output(len(names), x)
                names.append(name)
            continue
        xs = [g.input(c) for c in range(k)]
        if context == "sequential":
            h, write = g.history()
            xs = [g.n(Op.gswitch, h, x, x) for x in xs]  # = x, but inside the loop
            y = g.n(getattr(Op, name), *xs)
            write(y)
        else:
            y = g.n(getattr(Op, name), *xs)
        g.output(len(names), y)
        names.append(name)
    return g, names


def compare(c_out, ref_out, names, what):
    for ch, name in enumerate(names):
        if name in EXACT_OPS:
            assert_close(c_out[..., ch, :], ref_out[..., ch, :], what=f"{name} {what}", **EXACT_TOL)
        else:
            assert_ulps(c_out[..., ch, :], ref_out[..., ch, :], what=f"{name} {what}")


@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("context", ["vector", "sequential", "uniform"])
def test_pure_ops_match_reference(context, instances):
    g, names = build(context)
    c, ref = programs(g, frame_count=N, instances=instances)
    rng = np.random.default_rng(7)
    C = g.input_channels()
    x = None
    if C:
        x = signals(rng, C * instances, N).reshape(instances, C, N)
        x = x[0] if instances == 1 else x
    compare(stream(c, x), stream(ref, x), names, f"({context}, {instances} instance(s))")


def test_every_registered_op_renders_or_is_handled():
    """Each op is a source, renders as C, is a buffer op run by Python, or is rewritten away by
    the pipeline before a backend sees it (expanded, resolved)."""
    allowed = {"source", "pure", "state", "buffer", "expanded", "resolved"}
    for name, cls in REGISTRY.items():
        assert CRenderer.renders(cls) in allowed, f"no C rendering for op {name!r}"
    for name in PURE_OPS:
        assert name in EXACT_OPS or not issubclass(REGISTRY[name], Stateful)


def test_unrenderable_op_is_named():
    class Mystery(Stateful):
        name, arity = "mystery", 1

    g = dgen.Graph()
    g.output(0, g.n(Mystery(g.alloc()), g.input(0)))
    with pytest.raises(NotImplementedError, match="no C rendering for op 'mystery'"):
        dgen.generate(g)
