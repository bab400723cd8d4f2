"""Stateless op semantics (spec/ops.md: Arithmetic, Comparisons, Trigonometry, Control flow).

Every op is fed through `Op.input` channels on the float64 reference backend and compared with an
expectation written here from the spec (NumPy with C semantics), not from the implementation.
"""

import math
import zlib

import numpy as np
import pytest

import dgen
from dgen import Op

RTOL = 1e-9
ATOL = 1e-12
INF = math.inf
NAN = math.nan


def run_graph(g, inputs, frames=None):
    """Compile g on the reference backend and run it once; returns (outputs, frames)."""
    if inputs is not None:
        inputs = np.ascontiguousarray(inputs, dtype=np.float64)
        frames = inputs.shape[-1]
    prog = dgen.compile(g, backend="reference", frame_count=frames)
    out = np.asarray(prog.run(inputs=inputs, frames=frames))
    assert out.ndim == 2 and out.shape[1] == frames, out.shape
    return out


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def run_op(op, *channels):
    """One node `op(input(0), input(1), ...)` -> output(0)."""
    g = dgen.Graph(sample_rate=44100)
    xs = [g.n(Op.input(i)) for i in range(len(channels))]
    g.n(Op.output(0), g.n(op, *xs))
    out = run_graph(g, np.stack([np.asarray(c, dtype=np.float64) for c in channels]))
    assert out.shape[0] == 1
    return out[0]


# ---------------------------------------------------------------------------------------------
# Expectations with C semantics
# ---------------------------------------------------------------------------------------------
def c_round(x):
    """C round(): halfway cases away from zero (round(2.5)=3, round(-2.5)=-3)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.trunc(x)
    frac = x - t  # exact in binary floating point
    return np.where(np.abs(frac) >= 0.5, t + np.sign(x), t)


def c_sign(x):
    # spec: "sign (-1, 0, +1; sign(0)=0)"
    return np.sign(x)


def cmp(fn):
    return lambda a, b: fn(a, b).astype(np.float64)


UNARY = {
    "abs": np.abs,
    "sign": c_sign,
    "floor": np.floor,
    "ceil": np.ceil,
    "round": c_round,
    "tanh": np.tanh,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "exp": np.exp,
    "log": np.log,
    "log10": np.log10,
    "sqrt": np.sqrt,
}

BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,  # IEEE: x/0 -> +-inf, 0/0 -> nan
    "mod": np.fmod,  # C fmod: result has the sign of a
    "pow": np.power,  # C pow (numpy float64 power follows C99 pow)
    "min": np.minimum,
    "max": np.maximum,
    "atan2": np.arctan2,  # atan2(y, x)
    "gt": cmp(np.greater),
    "lt": cmp(np.less),
    "gte": cmp(np.greater_equal),
    "lte": cmp(np.less_equal),
    "eq": cmp(np.equal),
    "mse": lambda a, b: (a - b) ** 2,
}

# Edge values for unary ops.  nan is added separately (sign(nan) is not specified).
UNARY_EDGES = [
    0.0,
    -0.0,
    0.5,
    -0.5,
    1.5,
    -1.5,
    2.5,
    -2.5,
    3.5,
    -3.5,
    0.49,
    -0.49,
    0.51,
    -0.51,
    1.0,
    -1.0,
    2.0,
    -2.0,
    3.7,
    -3.7,
    1e-300,
    -1e-300,
    100.0,
    -100.0,
    709.0,
    710.0,
    -745.0,
    -750.0,
    1e300,
    -1e300,
    INF,
    -INF,
]

# Edge pairs (a, b) for binary ops.
BINARY_EDGES = [
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, 0.0),
    (1.0, -0.0),
    (0.0, -1.0),
    (-0.0, -1.0),
    (5.5, 2.0),
    (-5.5, 2.0),
    (5.5, -2.0),
    (-5.5, -2.0),
    (7.0, 7.0),
    (-7.0, 7.0),
    (6.0, 3.0),
    (2.0, 3.0),
    (2.0, -2.0),
    (2.0, 0.5),
    (-2.0, 0.5),
    (-8.0, 1.0 / 3.0),
    (-2.0, 3.0),
    (0.0, -1.0),
    (4.0, 0.0),
    (0.1, 1e-3),
    (1e300, 1e300),
    (1e-300, 1e300),
    (-1e300, 1e-300),
    (INF, 2.0),
    (-INF, 3.0),
    (2.0, INF),
    (0.5, INF),
    (3.0, -INF),
    (5.5, INF),
    (-5.5, -INF),
    (INF, INF),
    (INF, -INF),
    (-INF, -INF),
    (1.0, 1.0),
    (1.0, 2.0),
    (2.0, 1.0),
]
BINARY_NAN_EDGES = [(NAN, 1.0), (1.0, NAN), (NAN, NAN), (NAN, 0.0), (0.0, NAN)]
# spec: min/max are "(in the original too)" without a NaN rule (fmin vs. minimum differ): no NaN.
NO_NAN_BINARY = {"min", "max"}


def _rng(seed):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_op_table(name):
    rng = _rng(zlib.crc32(name.encode()))
    edges = list(UNARY_EDGES)
    if name in ("sin", "cos", "tan"):
        # huge finite arguments are ill-conditioned (argument reduction differs between libms)
        edges = [v for v in edges if not (math.isfinite(v) and abs(v) > 1e3)]
    if name != "sign":
        edges.append(NAN)
    lo, hi = (-1.3, 1.3) if name in ("asin", "acos") else (-12.0, 12.0)
    x = np.concatenate([np.array(edges), rng.uniform(lo, hi, 300), np.arange(-40, 41) / 4.0])
    with np.errstate(all="ignore"):
        expected = UNARY[name](x)
    assert_close(run_op(getattr(Op, name), x), expected)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_op_table(name):
    rng = _rng(zlib.crc32(name.encode()))
    edges = list(BINARY_EDGES)
    if name not in NO_NAN_BINARY:
        edges += BINARY_NAN_EDGES
    a_e, b_e = (np.array(v) for v in zip(*edges))
    a_r = rng.uniform(-10.0, 10.0, 300)
    b_r = rng.uniform(-10.0, 10.0, 300)
    if name == "pow":
        # keep random pows finite-ish: positive bases with any exponent, any base with ints
        a_r = np.abs(a_r)
        b_r = np.concatenate([b_r[:150], np.round(b_r[150:])])
    # equal pairs so eq/gte/lte see true cases
    a_q = rng.integers(-3, 4, 50).astype(float)
    b_q = rng.integers(-3, 4, 50).astype(float)
    a = np.concatenate([a_e, a_r, a_q])
    b = np.concatenate([b_e, b_r, b_q])
    with np.errstate(all="ignore"):
        expected = BINARY[name](a, b)
    assert_close(run_op(getattr(Op, name), a, b), expected)


def test_div_by_zero_is_ieee():
    a = np.array([1.0, -1.0, 0.0, 3.0, -3.0, 0.0])
    b = np.array([0.0, 0.0, 0.0, -0.0, -0.0, 5.0])
    y = run_op(Op.div, a, b)
    assert y[0] == INF and y[1] == -INF and math.isnan(y[2])
    assert y[3] == -INF and y[4] == INF and y[5] == 0.0


def test_mod_is_c_fmod_sign_of_dividend():
    a = np.array([5.5, -5.5, 5.5, -5.5, 7.0, -7.0, 1.0, 0.25])
    b = np.array([2.0, 2.0, -2.0, -2.0, 7.0, 3.0, 0.0, 1.0])
    y = run_op(Op.mod, a, b)
    assert_close(y[:6], [1.5, -1.5, 1.5, -1.5, 0.0, -1.0])
    assert math.isnan(y[6])  # fmod(x, 0) = nan
    assert y[7] == 0.25


def test_pow_c_semantics():
    a = np.array([2.0, 2.0, -8.0, 0.0, 9.0, -2.0, 1.0, NAN, -2.0])
    b = np.array([10.0, -1.0, 1.0 / 3.0, -1.0, 0.5, 3.0, NAN, 0.0, 0.5])
    y = run_op(Op.pow, a, b)
    assert_close(y[:2], [1024.0, 0.5])
    assert math.isnan(y[2])  # negative base, non-integer exponent
    assert y[3] == INF  # pow(0, -1)
    assert_close(y[4:6], [3.0, -8.0])
    assert y[6] == 1.0  # C: pow(1, nan) = 1
    assert y[7] == 1.0  # C: pow(nan, 0) = 1
    assert math.isnan(y[8])


def test_sign_of_zero_is_zero():
    y = run_op(Op.sign, np.array([0.0, -0.0, 3.0, -3.0, 1e-300, -1e-300, INF, -INF]))
    assert list(y) == [0.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0]


def test_round_half_away_from_zero():
    x = np.array([2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 2.4999, -2.4999, 2.6, -2.6, 0.0, 3.0])
    y = run_op(Op.round, x)
    assert list(y) == [3.0, -3.0, 1.0, -1.0, 2.0, -2.0, 2.0, -2.0, 3.0, -3.0, 0.0, 3.0]


def test_floor_ceil():
    x = np.array([1.5, -1.5, 2.0, -2.0, 0.0, -0.25])
    assert list(run_op(Op.floor, x)) == [1.0, -2.0, 2.0, -2.0, 0.0, -1.0]
    assert list(run_op(Op.ceil, x)) == [2.0, -1.0, 2.0, -2.0, 0.0, 0.0]


def test_min_max():
    a = np.array([1.0, -1.0, 3.0, -INF, 2.0])
    b = np.array([2.0, -2.0, 3.0, 0.0, INF])
    assert list(run_op(Op.min, a, b)) == [1.0, -2.0, 3.0, -INF, 2.0]
    assert list(run_op(Op.max, a, b)) == [2.0, -1.0, 3.0, 0.0, INF]


def test_comparisons_return_one_or_zero():
    a = np.array([1.0, 2.0, 2.0, NAN, -0.0, -INF])
    b = np.array([2.0, 1.0, 2.0, 1.0, 0.0, INF])
    assert list(run_op(Op.gt, a, b)) == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert list(run_op(Op.lt, a, b)) == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert list(run_op(Op.gte, a, b)) == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert list(run_op(Op.lte, a, b)) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert list(run_op(Op.eq, a, b)) == [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_log_sqrt_asin_outside_domain_is_nan():
    x = np.array([-1.0, -1e-300, 0.0, 1.0])
    y = run_op(Op.log, x)
    assert math.isnan(y[0]) and math.isnan(y[1]) and y[2] == -INF and y[3] == 0.0
    y = run_op(Op.log10, x)
    assert math.isnan(y[0]) and y[2] == -INF
    y = run_op(Op.sqrt, x)
    assert math.isnan(y[0]) and y[2] == 0.0 and y[3] == 1.0
    y = run_op(Op.asin, np.array([1.5, -1.5, 1.0]))
    assert math.isnan(y[0]) and math.isnan(y[1]) and y[2] == pytest.approx(math.pi / 2)
    y = run_op(Op.acos, np.array([1.5, -1.0]))
    assert math.isnan(y[0]) and y[1] == pytest.approx(math.pi)


def test_atan2_quadrants():
    ys = np.array([1.0, 1.0, -1.0, -1.0, 0.0, 0.0, -0.0, 1.0, 0.0])
    xs = np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 0.0, 0.0])
    assert_close(run_op(Op.atan2, ys, xs), np.arctan2(ys, xs))
    y = run_op(Op.atan2, np.array([1.0, 0.0]), np.array([0.0, -1.0]))
    assert y[0] == pytest.approx(math.pi / 2) and y[1] == pytest.approx(math.pi)


def test_mix():
    rng = _rng(1)
    a = np.concatenate([[1.0, 1.0, 1.0, -2.0], rng.normal(size=200)])
    b = np.concatenate([[3.0, 3.0, 3.0, 4.0], rng.normal(size=200)])
    t = np.concatenate([[0.0, 1.0, 0.5, 2.0], rng.uniform(-1.0, 2.0, 200)])
    y = run_op(Op.mix, a, b, t)
    # spec: "mix(a, b, t) = a*(1-t) + b*t"
    assert_close(y, a * (1 - t) + b * t)
    assert list(y[:4]) == [1.0, 3.0, 2.0, 10.0]


def test_mse_per_frame():
    rng = _rng(2)
    a, b = rng.normal(size=(2, 257))
    assert_close(run_op(Op.mse, a, b), (a - b) ** 2)


def test_gswitch_condition_sign():
    # spec: "a if cond > 0 else b"
    cond = np.array([1.0, 0.0, -0.0, -1.0, 0.5, 1e-300, -1e-300, INF, -INF, NAN, 0.0, -3.0, 2.0])
    a = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, NAN, INF, 20.0])
    b = np.array([-10.0, -11.0, -12.0, -13.0, -14.0, -15.0, -16.0, -17.0, -18.0, -19.0, -20.0, -21.0, NAN])
    y = run_op(Op.gswitch, cond, a, b)
    # nan > 0 is false -> b; the branch not taken must not leak nan/inf into the result
    expected = [10.0, -11.0, -12.0, -13.0, 14.0, 15.0, -16.0, 17.0, -18.0, -19.0, -20.0, -21.0, 20.0]
    assert_close(y, expected)


# ---------------------------------------------------------------------------------------------
# selector, seq, constants, outputs
# ---------------------------------------------------------------------------------------------
def selector_expected(index, options):
    """spec: 0 if index <= 0; else o_i for the smallest i with index <= i; 0 if index > k."""
    k = len(options)
    out = np.zeros_like(index)
    for n, ix in enumerate(index):
        if ix <= 0 or ix > k:
            continue
        i = int(math.ceil(ix))  # smallest integer i >= ix, 1 <= i <= k
        out[n] = options[i - 1][n]
    return out


def test_selector_boundaries():
    index = np.array(
        [-5.0, -1.0, -1e-9, 0.0, 1e-9, 0.5, 1.0, 1.0 + 1e-9, 1.5, 2.0, 2.5, 3.0, 3.0 + 1e-9, 3.5, 4.0, 100.0, -INF, INF]
    )
    rng = _rng(3)
    opts = [rng.uniform(1.0, 2.0, index.size) + 10.0 * (i + 1) for i in range(3)]
    g = dgen.Graph()
    idx = g.n(Op.input(0))
    o = [g.n(Op.input(i + 1)) for i in range(3)]
    g.n(Op.output(0), g.selector(idx, *o))
    y = run_graph(g, np.stack([index, *opts]))[0]
    expected = selector_expected(index, opts)
    assert_close(y, expected)
    # spot checks straight from the spec text
    assert y[3] == 0.0  # index 0 -> 0
    assert y[4] == opts[0][4]  # index in (0, 1] -> o1
    assert y[6] == opts[0][6]  # index 1 -> o1
    assert y[7] == opts[1][7]  # index just above 1 -> o2
    assert y[8] == opts[1][8]  # 1.5 -> o2
    assert y[11] == opts[2][11]  # 3 = k -> o3
    assert y[12] == 0.0 and y[15] == 0.0  # > k -> 0


def test_selector_with_plain_number_options():
    index = np.array([0.0, 0.3, 1.0, 1.2, 2.0, 2.01, -1.0])
    g = dgen.Graph()
    g.n(Op.output(0), g.selector(g.n(Op.input(0)), 10.0, 20.0))
    y = run_graph(g, index[None, :])[0]
    assert list(y) == [0.0, 10.0, 10.0, 20.0, 20.0, 0.0, 0.0]


def test_seq_value_is_last_input():
    rng = _rng(4)
    a, b, c = rng.normal(size=(3, 64))
    g = dgen.Graph()
    xs = [g.n(Op.input(i)) for i in range(3)]
    g.n(Op.output(0), g.seq(*xs))
    g.n(Op.output(1), g.seq(xs[0], xs[1]))
    y = run_graph(g, np.stack([a, b, c]))
    assert_close(y[0], c)
    assert_close(y[1], b)


def test_constant_and_plain_number_inputs():
    g = dgen.Graph()
    x = g.n(Op.input(0))
    g.n(Op.output(0), g.n(Op.constant(2.5)))
    g.n(Op.output(1), g.n(Op.add, x, 2.5))  # plain number becomes a constant
    g.n(Op.output(2), g.n(Op.sub, 1.0, x))
    g.n(Op.output(3), g.n(Op.mul, g.n(Op.constant(-3.0)), x))
    xs = np.linspace(-2.0, 2.0, 33)
    y = run_graph(g, xs[None, :])
    assert y.shape == (4, 33)
    assert_close(y[0], np.full(33, 2.5))
    assert_close(y[1], xs + 2.5)
    assert_close(y[2], 1.0 - xs)
    assert_close(y[3], -3.0 * xs)


def test_outputs_are_ordered_by_channel_index():
    g = dgen.Graph()
    x = g.n(Op.input(0))
    g.n(Op.output(2), g.n(Op.mul, x, 3.0))
    g.n(Op.output(0), x)
    g.n(Op.output(1), g.n(Op.mul, x, 2.0))
    xs = np.arange(10, dtype=float)
    y = run_graph(g, xs[None, :])
    assert y.shape == (3, 10)
    assert_close(y, np.stack([xs, 2 * xs, 3 * xs]))


def test_output_value_passes_through():
    # spec: output(i) value is x[n]; it can feed other nodes
    g = dgen.Graph()
    x = g.n(Op.input(0))
    o0 = g.n(Op.output(0), x)
    g.n(Op.output(1), g.n(Op.add, o0, 1.0))
    xs = np.linspace(0.0, 1.0, 17)
    y = run_graph(g, xs[None, :])
    assert_close(y[1], xs + 1.0)


def test_several_input_channels():
    rng = _rng(5)
    data = rng.normal(size=(4, 100))
    g = dgen.Graph()
    xs = [g.n(Op.input(i)) for i in range(4)]
    acc = g.n(Op.add, g.n(Op.mul, xs[0], xs[1]), g.n(Op.sub, xs[2], xs[3]))
    g.n(Op.output(0), acc)
    assert_close(run_graph(g, data)[0], data[0] * data[1] + data[2] - data[3])


def test_python_operators_on_nodes():
    g = dgen.Graph()
    x = g.n(Op.input(0))
    y = g.n(Op.input(1))
    g.n(Op.output(0), x + 2)
    g.n(Op.output(1), 2 - x)
    g.n(Op.output(2), x * y)
    g.n(Op.output(3), x / 4)
    g.n(Op.output(4), 1 / y)
    g.n(Op.output(5), x - y)
    rng = _rng(6)
    a = rng.normal(size=50)
    b = rng.uniform(0.5, 2.0, 50)
    out = run_graph(g, np.stack([a, b]))
    assert_close(out, np.stack([a + 2, 2 - a, a * b, a / 4, 1 / b, a - b]))


def test_reference_backend_is_float64():
    # spec: "the reference interpreter in float64 by default"
    g = dgen.Graph()
    x = g.n(Op.input(0))
    g.n(Op.output(0), g.n(Op.sub, g.n(Op.add, x, 1e-12), x))
    y = run_graph(g, np.ones((1, 8)))[0]
    assert_close(y, np.full(8, 1e-12), rtol=1e-3, atol=0.0)
