"""The primitive-op base class and the registry every backend checks itself against.

One class per primitive holds every fact about it: its formula (docstring), its NumPy
reference (`ref`), its C expression (`c_expr`, used by render/) and its gradient (`vjp`,
which builds graph nodes, never numbers).
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..errors import describe

# Scheduling kinds of an op.
PURE = "pure"  # elementwise, stateless: vector blocks
SOURCE = "source"  # constant/input/param: a value known before the frame loop
SINK = "sink"  # output: stores a value
STATE = "state"  # owns a cell, runs frame by frame
BUFFER = "buffer"  # needs whole signals at once (windowed FFT losses)

REGISTRY: dict[str, type] = {}


def register(cls):
    """Add a primitive class to the registry (by its `name`)."""
    if cls.name in REGISTRY:
        raise RuntimeError(f"op {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


class Primitive:
    """Base of all primitive ops. Stateless ones are singletons (`Op.add`)."""

    name: str = "?"
    arity: int | tuple[int, int | None] = 0  # exact count, or (min, max or None)
    kind: str = PURE
    cell = None  # the state cell of a stateful op
    cell_role: str | None = None  # "history", "memory" or "owned"

    # --- identity: ops with equal keys compute the same thing (used by cse and caching)
    def params(self) -> tuple:
        return ()

    def key(self) -> tuple:
        cell = (self.cell.id,) if self.cell is not None else ()
        return (self.name, *self.params(), *cell)

    def __repr__(self) -> str:
        args = [repr(p) for p in self.params()]
        if self.cell is not None:
            args.append(f"cell={self.cell.id}")
        return f"{self.name}({', '.join(args)})" if args else self.name

    # --- validation
    def check(self, node) -> None:
        """Raise a GraphError naming the node if its inputs do not fit this op."""
        lo, hi = (self.arity, self.arity) if isinstance(self.arity, int) else self.arity
        got = len(node.inputs)
        if got < lo or (hi is not None and got > hi):
            want = str(lo) if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            raise errors.ArityError(f"{describe(node)}: expected {want} inputs, got {got}")

    # --- semantics
    def ref(self, *xs):
        """NumPy meaning on arrays (or scalars) of one dtype."""
        raise NotImplementedError(f"op {self.name!r} has no reference implementation")

    def vjp(self, adj, out, *xs):
        """Adjoints of the inputs as graph nodes (None = zero), given the output's adjoint."""
        raise NotImplementedError(f"op {self.name!r} has no gradient rule")


class Pure(Primitive):
    """A stateless elementwise op. `c_expr` is its C spelling, `{0}`, `{1}`... its operands."""

    kind = PURE
    c_expr: str = ""

    def c_render(self, p: str, args: list[str]) -> str:
        """C expression for operands `args`; `p` is the helper prefix, `sf` or `vf`."""
        return self.c_expr.format(*args, p=p)


class Stateful(Primitive):
    """An op owning a cell. The reference runs `step` once per frame."""

    kind = STATE
    cell_role = "owned"

    def __init__(self, cell):
        self.cell = cell

    def step(self, mem, base: int, sr: float, *xs):
        """Advance one frame: read/write `mem[base...]`, return this frame's value."""
        raise NotImplementedError

    def expand(self, g, sr: float, *xs):
        """The same op built from history cells and pure ops (for C, CUDA and autodiff)."""
        raise NotImplementedError(f"op {self.name!r} cannot be expanded")


def as_float(x, dtype):
    return np.asarray(x, dtype=dtype)
