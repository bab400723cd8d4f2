"""Stateless elementwise primitives: arithmetic, comparisons, trig, control flow, mse.

`ref` gives C semantics in NumPy (fmod, roundf, fminf...); `c_expr` is the C spelling over
the prelude's `sf_`/`vf_` helpers (`{p}` becomes `sf` or `vf`); `vjp` builds the gradient
as graph nodes.
"""

from __future__ import annotations

import numpy as np

from .base import Pure, register


def _g(*xs):
    """The graph that the given nodes live in (the backward graph during autodiff)."""
    return next(x.graph for x in xs if hasattr(x, "graph"))


def _n(name, *xs):
    from . import Op

    return _g(*xs).n(getattr(Op, name), *xs)


def _unary(name_, formula, ref_fn, c_fn, vjp_fn=None):
    """Declare a one-input primitive in one line (the table below)."""

    def ref(self, x):
        return ref_fn(x)

    def vjp(self, adj, out, x):
        return (None,) if vjp_fn is None else (vjp_fn(adj, out, x),)

    cls = type(
        name_.title().replace("_", ""),
        (Pure,),
        {
            "__doc__": formula,
            "name": name_,
            "arity": 1,
            "ref": ref,
            "vjp": vjp,
            "c_expr": f"{{p}}_{c_fn}({{0}})",
        },
    )
    return register(cls)


def _c_round(x):
    # C roundf: halves away from zero (numpy rounds half to even). x - trunc(x) is exact,
    # unlike floor(|x| + 0.5), which rounds 0.49999997 up in float32.
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


LN10 = float(np.log(10.0))

_unary("abs", "y = |x|", np.abs, "abs", lambda g, y, x: g * _n("sign", x))
_unary("sign", "y = -1, 0 or +1 (sign(0) = 0)", np.sign, "sign")
_unary("floor", "y = floor(x)", np.floor, "floor")
_unary("ceil", "y = ceil(x)", np.ceil, "ceil")
_unary("round", "y = round(x), halves away from zero (C roundf)", _c_round, "round")
_unary("sin", "y = sin(x)", np.sin, "sin", lambda g, y, x: g * _n("cos", x))
_unary("cos", "y = cos(x)", np.cos, "cos", lambda g, y, x: -(g * _n("sin", x)))
_unary("tan", "y = tan(x)", np.tan, "tan", lambda g, y, x: g * (1.0 + y * y))
_unary("asin", "y = asin(x)", np.arcsin, "asin", lambda g, y, x: g / _n("sqrt", 1.0 - x * x))
_unary("acos", "y = acos(x)", np.arccos, "acos", lambda g, y, x: -(g / _n("sqrt", 1.0 - x * x)))
_unary("atan", "y = atan(x)", np.arctan, "atan", lambda g, y, x: g / (1.0 + x * x))
_unary("exp", "y = e^x", np.exp, "exp", lambda g, y, x: g * y)
_unary("log", "y = ln(x)", np.log, "log", lambda g, y, x: g / x)
_unary("log10", "y = log10(x)", np.log10, "log10", lambda g, y, x: g / (x * LN10))
_unary("sqrt", "y = sqrt(x)", np.sqrt, "sqrt", lambda g, y, x: g * 0.5 / y)
_unary("tanh", "y = tanh(x)", np.tanh, "tanh", lambda g, y, x: g * (1.0 - y * y))


@register
class Add(Pure):
    """y = a + b"""

    name, arity, c_expr = "add", 2, "({0} + {1})"

    def ref(self, a, b):
        return a + b

    def vjp(self, g, y, a, b):
        return g, g


@register
class Sub(Pure):
    """y = a - b"""

    name, arity, c_expr = "sub", 2, "({0} - {1})"

    def ref(self, a, b):
        return a - b

    def vjp(self, g, y, a, b):
        return g, -g


@register
class Mul(Pure):
    """y = a * b"""

    name, arity, c_expr = "mul", 2, "({0} * {1})"

    def ref(self, a, b):
        return a * b

    def vjp(self, g, y, a, b):
        return g * b, g * a


@register
class Div(Pure):
    """y = a / b (IEEE: x/0 is +-inf or nan)"""

    name, arity, c_expr = "div", 2, "({0} / {1})"

    def ref(self, a, b):
        return np.divide(a, b)

    def vjp(self, g, y, a, b):
        gb = g / b
        return gb, -(gb * y)


@register
class Mod(Pure):
    """y = fmod(a, b): the remainder with the sign of a"""

    name, arity, c_expr = "mod", 2, "{p}_fmod({0}, {1})"

    def ref(self, a, b):
        return np.fmod(a, b)

    def vjp(self, g, y, a, b):
        # fmod(a, b) = a - b*trunc(a/b): d/da = 1, d/db = -trunc(a/b) = (y - a)/b
        return g, g * ((y - a) / b)


@register
class Pow(Pure):
    """y = pow(a, b) (C semantics)"""

    name, arity, c_expr = "pow", 2, "{p}_pow({0}, {1})"

    def ref(self, a, b):
        return np.power(a, b)

    def vjp(self, g, y, a, b):
        da = g * b * _n("pow", a, b - 1.0)
        # d/db = y*ln(a), defined for a > 0 only; 0 elsewhere rather than NaN
        db = _n("gswitch", _n("gt", a, 0.0), g * y * _n("log", _n("abs", a)), 0.0)
        return da, db


@register
class Min(Pure):
    """y = fmin(a, b) (a NaN operand loses)"""

    name, arity, c_expr = "min", 2, "{p}_min({0}, {1})"

    def ref(self, a, b):
        return np.fmin(a, b)

    def vjp(self, g, y, a, b):
        pick_a = _n("eq", y, a)
        return g * pick_a, g * (1.0 - pick_a)


@register
class Max(Pure):
    """y = fmax(a, b) (a NaN operand loses)"""

    name, arity, c_expr = "max", 2, "{p}_max({0}, {1})"

    def ref(self, a, b):
        return np.fmax(a, b)

    def vjp(self, g, y, a, b):
        pick_a = _n("eq", y, a)
        return g * pick_a, g * (1.0 - pick_a)


@register
class Atan2(Pure):
    """y = atan2(a, b), the angle of the point (b, a)"""

    name, arity, c_expr = "atan2", 2, "{p}_atan2({0}, {1})"

    def ref(self, a, b):
        return np.arctan2(a, b)

    def vjp(self, g, y, a, b):
        r2 = a * a + b * b + 1e-30  # the gradient at the origin is 0, not NaN
        return g * b / r2, -(g * a) / r2


@register
class Mix(Pure):
    """y = a*(1-t) + b*t"""

    name, arity, c_expr = "mix", 3, "({0} * (1.0f - {2}) + {1} * {2})"

    def ref(self, a, b, t):
        return a * (1 - t) + b * t

    def vjp(self, g, y, a, b, t):
        return g * (1.0 - t), g * t, g * (b - a)


def _compare(name_, formula, fn):
    def ref(self, a, b):
        return fn(a, b).astype(np.result_type(a, b))

    def vjp(self, g, y, a, b):
        return None, None

    cls = type(
        name_.title(),
        (Pure,),
        {
            "__doc__": formula,
            "name": name_,
            "arity": 2,
            "ref": ref,
            "vjp": vjp,
            "c_expr": f"{{p}}_{name_}({{0}}, {{1}})",
        },
    )
    return register(cls)


_compare("gt", "y = 1 if a > b else 0", np.greater)
_compare("lt", "y = 1 if a < b else 0", np.less)
_compare("gte", "y = 1 if a >= b else 0", np.greater_equal)
_compare("lte", "y = 1 if a <= b else 0", np.less_equal)
_compare("eq", "y = 1 if a == b else 0", np.equal)


@register
class Gswitch(Pure):
    """y = a if cond > 0 else b"""

    name, arity, c_expr = "gswitch", 3, "{p}_select({0}, {1}, {2})"

    def ref(self, c, a, b):
        return np.where(c > 0, a, b)

    def vjp(self, g, y, c, a, b):
        return None, _n("gswitch", c, g, 0.0), _n("gswitch", c, 0.0, g)


@register
class Selector(Pure):
    """y = 0 if index <= 0; o_i for the smallest i with index <= i; 0 if index > k"""

    name, arity = "selector", (2, None)

    def c_render(self, p, args):
        index, options = args[0], args[1:]
        expr = f"{p}_splat(0.0f)"
        for i in range(len(options), 0, -1):
            lo, hi = f"{p}_splat({i - 1}.0f)", f"{p}_splat({i}.0f)"
            hit = f"({p}_gt({index}, {lo}) * {p}_lte({index}, {hi}))"
            expr = f"{p}_select({hit}, {options[i - 1]}, {expr})"
        return expr

    def ref(self, index, *options):
        out = np.zeros(np.broadcast(index, *options).shape, np.result_type(index, *options))
        for i in range(len(options), 0, -1):  # smallest i wins: write it last
            out = np.where((index > i - 1) & (index <= i), options[i - 1], out)
        return out

    def vjp(self, g, y, index, *options):
        grads = []
        for i in range(len(options)):
            routed = [0.0] * len(options)
            routed[i] = g
            grads.append(_n("selector", index, *routed))
        return (None, *grads)


@register
class Seq(Pure):
    """y = the last input; all earlier inputs (their memory writes too) happen first"""

    name, arity = "seq", (1, None)

    def c_render(self, p, args):
        return args[-1]

    def ref(self, *xs):
        return xs[-1]

    def vjp(self, g, y, *xs):
        return (*([None] * (len(xs) - 1)), g)


@register
class Mse(Pure):
    """y = (a - b)^2"""

    name, arity, c_expr = "mse", 2, "(({0} - {1}) * ({0} - {1}))"

    def ref(self, a, b):
        return (a - b) * (a - b)

    def vjp(self, g, y, a, b):
        d = 2.0 * g * (a - b)
        return d, -d
