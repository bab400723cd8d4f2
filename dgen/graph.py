"""The graph a user builds: immutable nodes, state cells and the builder API.

A node is `(op, inputs)` and never changes once made; `g.n(op, *inputs)` appends one.
Feedback is not a cycle in this data: it runs through a cell written by `history_write`
and read, one frame later, by `history_read` (see analysis/feedback.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real

from . import errors
from .errors import describe


@dataclass(frozen=True, eq=False)
class Cell:
    """A slot of state memory: `size` floats, zero (or `init`) after reset."""

    id: int
    size: int = 1
    init: float = 0.0

    def __repr__(self) -> str:
        return f"Cell({self.id}, size={self.size})"


@dataclass(frozen=True, eq=False)
class Node:
    """One value per frame. Arithmetic operators build new nodes in the same graph."""

    id: int
    op: object
    inputs: tuple[int, ...]
    graph: Graph = field(repr=False)

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.op!r}, inputs={list(self.inputs)})"

    def _bin(self, name, other, swap=False):
        from .ops import Op

        a, b = (other, self) if swap else (self, other)
        return self.graph.n(getattr(Op, name), a, b)

    def __add__(self, o):
        return self._bin("add", o)

    def __radd__(self, o):
        return self._bin("add", o, swap=True)

    def __sub__(self, o):
        return self._bin("sub", o)

    def __rsub__(self, o):
        return self._bin("sub", o, swap=True)

    def __mul__(self, o):
        return self._bin("mul", o)

    def __rmul__(self, o):
        return self._bin("mul", o, swap=True)

    def __truediv__(self, o):
        return self._bin("div", o)

    def __rtruediv__(self, o):
        return self._bin("div", o, swap=True)

    def __pow__(self, o):
        return self._bin("pow", o)

    def __neg__(self):
        return self._bin("mul", -1.0)

    def __mod__(self, o):
        return self._bin("mod", o)


# The largest cell: compiled backends index a cell with a C int (and float32 indices are
# exact only up to 2**24 anyway).
MAX_CELL = 2**31 - 1

# Roles a cell can play; a cell plays one role only.
_HISTORY, _MEMORY, _OWNED = "history", "memory", "owned"


class Graph:
    """A sample-level signal graph. See spec/api.md for the public surface."""

    def __init__(self, sample_rate: float = 44100):
        if not (isinstance(sample_rate, Real) and math.isfinite(sample_rate) and sample_rate > 0):
            raise errors.GraphError(f"sample_rate must be a positive finite number, got {sample_rate!r}")
        self.sample_rate = float(sample_rate)
        self.nodes: list[Node] = []
        self.cells: list[Cell] = []
        self.parameters: list = []  # dgen.Parameter objects, in creation order
        self._cell_users: dict[int, list[Node]] = {}
        self._cell_role: dict[int, str] = {}
        self.bindings: dict[int, int] = {}  # placeholder id -> node it stands for
        self.order_edges: list[tuple[int, int]] = []  # extra (before, after) within a frame

    # ----------------------------------------------------------------- building
    def alloc(self, size: int = 1, init: float = 0.0) -> Cell:
        """A new state cell of `size` floats (a memory block when size > 1)."""
        if not (isinstance(size, Integral) and not isinstance(size, bool) and 1 <= size <= MAX_CELL):
            raise errors.GraphError(f"alloc: size must be an int in [1, {MAX_CELL}], got {size!r}")
        cell = Cell(len(self.cells), int(size), float(init))
        self.cells.append(cell)
        return cell

    def n(self, op, *inputs) -> Node:
        """Append a node computing `op(*inputs)` and return its handle."""
        from .ops import Primitive

        node_id = len(self.nodes)
        if not isinstance(op, Primitive):
            raise errors.UnknownOpError(f"node {node_id}: {op!r} is not a dgen op (use Op.add, Op.phasor(cell), ...)")
        ids = tuple(self._input_id(node_id, op, i, x) for i, x in enumerate(inputs))
        node = Node(len(self.nodes), op, ids, self)  # numbers above became constant nodes
        op.check(node)
        if op.cell is not None:
            self._claim_cell(node)
        self.nodes.append(node)
        return node

    def _input_id(self, node_id: int, op, position: int, x) -> int:
        from .ops import Op

        if isinstance(x, Node):
            if x.graph is not self:
                raise errors.ForeignNodeError(
                    f"node {node_id} ({op.name}): input {position} is node {x.id} of another graph"
                )
            return x.id
        if isinstance(x, Real) and not isinstance(x, bool):
            return self.n(Op.constant(float(x))).id
        raise errors.GraphError(f"node {node_id} ({op.name}): input {position} is {x!r}, expected a Node or a number")

    def _claim_cell(self, node: Node) -> None:
        cell = node.op.cell
        if not isinstance(cell, Cell) or cell.id >= len(self.cells) or self.cells[cell.id] is not cell:
            raise errors.GraphError(f"{describe(node)}: its cell was not allocated by this graph")
        role = node.op.cell_role
        users = self._cell_users.setdefault(cell.id, [])
        old_role = self._cell_role.setdefault(cell.id, role)
        if old_role != role or (role == _OWNED and users):
            raise errors.CellConflictError(
                f"{describe(node)}: cell {cell.id} is already used by {describe(users[0])}; "
                "each stateful op needs its own g.alloc()"
            )
        if node.op.name == "history_write":
            writers = [u for u in users if u.op.name == "history_write"]
            if writers:
                raise errors.CellConflictError(
                    f"{describe(node)}: cell {cell.id} already has a writer, {describe(writers[0])}"
                )
        users.append(node)

    # ----------------------------------------------------------------- queries
    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def outputs(self) -> dict[int, Node]:
        """Output channel -> the output node writing it."""
        return {nd.op.channel: nd for nd in self.nodes if nd.op.name == "output"}

    def input_channels(self) -> int:
        chans = [nd.op.channel for nd in self.nodes if nd.op.name == "input"]
        return max(chans) + 1 if chans else 0

    def __len__(self) -> int:
        return len(self.nodes)

    # ----------------------------------------------------------------- conveniences
    def constant(self, value: float) -> Node:
        from .ops import Op

        return self.n(Op.constant(value))

    def input(self, channel: int = 0) -> Node:
        from .ops import Op

        return self.n(Op.input(channel))

    def output(self, channel: int, x) -> Node:
        from .ops import Op

        return self.n(Op.output(channel), x)

    def placeholder(self, label: str = "") -> Node:
        """A node to wire now and `bind` later (Gen-style patching in any order)."""
        from .ops import Op

        return self.n(Op.placeholder(label))

    def bind(self, placeholder: Node, node) -> None:
        """Make `placeholder` stand for `node` (resolved when the graph is compiled)."""
        if not (isinstance(placeholder, Node) and placeholder.op.name == "placeholder"):
            raise errors.GraphError(f"bind: {placeholder!r} is not a placeholder node")
        if placeholder.graph is not self or (isinstance(node, Node) and node.graph is not self):
            raise errors.ForeignNodeError(f"{describe(placeholder)}: bind() got a node of another graph")
        if placeholder.id in self.bindings:
            raise errors.GraphError(f"{describe(placeholder)}: already bound to node {self.bindings[placeholder.id]}")
        if not isinstance(node, Node):
            node = self.constant(node)
        self.bindings[placeholder.id] = node.id

    def history(self, cell: Cell | None = None) -> tuple[Node, callable]:
        """`(read, write)`: the read node and a function that closes the loop."""
        from .ops import Op

        cell = cell or self.alloc()
        read = self.n(Op.history_read(cell))
        return read, lambda x: self.n(Op.history_write(cell), x)

    # Building blocks live in dsp/; these methods are the spec'd entry points.
    def delay(self, x, d, max_delay=None):
        from .dsp import delay

        return delay(self, x, d, max_delay)

    def sos(self, x, b0, b1, b2, a1, a2):
        from .dsp import sos

        return sos(self, x, b0, b1, b2, a1, a2)

    def biquad(self, x, cutoff, resonance, gain, mode):
        from .dsp import biquad

        return biquad(self, x, cutoff, resonance, gain, mode)

    def compressor(self, x, ratio, threshold, knee, attack, release, sidechain_on=0.0, sidechain=0.0):
        from .dsp import compressor

        return compressor(self, x, ratio, threshold, knee, attack, release, sidechain_on, sidechain)

    def selector(self, index, *options):
        from .ops import Op

        return self.n(Op.selector, index, *options)

    def seq(self, *nodes):
        from .ops import Op

        return self.n(Op.seq, *nodes)

    def spectral_loss(self, a, b, window_size: int = 64, hop: int = 1):
        from .dsp import spectral_loss

        return spectral_loss(self, a, b, window_size, hop)

    def multi_spectral_loss(self, a, b, windows=(64, 128, 256), hop=None):
        from .dsp import multi_spectral_loss

        return multi_spectral_loss(self, a, b, windows, hop)
