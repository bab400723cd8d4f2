"""Reverse-mode autodiff as a graph -> graph transform: the adjoint graph.

The adjoint graph is an ordinary dgen graph that runs frames from last to first. It reads
forward values from a tape (`tape(id)` nodes), and each op's `vjp` builds its part from
ordinary nodes. State is handled by the primitives only (phasor & co. are expanded first):

- history_write(c)(x) at frame n feeds every history_read(c) at frame n+1. Its adjoint:
  an adjoint cell c' carried backwards in time. The reads' adjoints at frame n+1 are summed
  into history_write(c'); at frame n, history_read(c') hands them to x's adjoint.
- memory_write(c)(j, v) / memory_read(c)(j): the adjoint of a read adds into slot j of an
  adjoint memory (memory_accum); the write takes the slot's sum and clears it
  (memory_take), so a write receives exactly the reads that saw it.
- param nodes: the gradient is a sum over frames (grad_accum into a gradient cell).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph
from ..ops import BUFFER, PURE, Op
from .expand import prune_dead


@dataclass
class Adjoint:
    """The backward graph and how it connects to the forward one."""

    graph: Graph
    tape_ids: tuple[int, ...]  # forward nodes whose values the backward pass reads
    grad_cells: dict  # forward param cell id -> gradient cell (in the backward graph)
    input_grads: dict = field(default_factory=dict)  # forward input channel -> backward output channel


class _Builder:
    def __init__(self, fwd: Graph):
        self.fwd = fwd
        self.g = Graph(fwd.sample_rate)
        self.g.order_edges = []
        self.adj: dict[int, list] = {}
        self.tape: dict[int, object] = {}
        self.cell_map: dict[int, object] = {}  # forward cell -> adjoint cell
        self.last_memory_op: dict[int, int] = {}
        self.read_adjoints: dict[int, list] = {}  # forward history cell -> adjoints of its reads
        self.input_adjoints: dict[int, list] = {}  # forward input channel -> adjoints of its reads

    def value(self, i):
        """The forward value of node i, as a backward-graph node."""
        nd = self.fwd.nodes[i]
        if nd.op.name == "constant":
            return self.g.n(nd.op)
        if i not in self.tape:
            self.tape[i] = self.g.n(Op.tape(i))
        return self.tape[i]

    def add(self, i, contribution):
        if contribution is not None and i in self.active:
            self.adj.setdefault(i, []).append(contribution)

    def total(self, i):
        parts = self.adj.get(i)
        if not parts:
            return None
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out

    def adjoint_cell(self, cell):
        if cell.id not in self.cell_map:
            self.cell_map[cell.id] = self.g.alloc(cell.size)
        return self.cell_map[cell.id]

    def memory_op(self, op, *xs):
        """Adjoint memory ops of one cell keep the reverse of the forward order."""
        node = self.g.n(op, *xs)
        prev = self.last_memory_op.get(op.cell.id)
        if prev is not None:
            self.g.order_edges.append((prev, node.id))
        self.last_memory_op[op.cell.id] = node.id
        return node


_WRITERS = ("history_write", "memory_write")


def differentiate(fwd: Graph, seeds: dict, forward_order) -> Adjoint:
    """The adjoint graph of `fwd`. seeds: forward node id -> function(builder graph) -> node,
    the adjoint fed into that node at every frame (e.g. 1/N for a mean loss).
    forward_order: the order the forward program runs nodes in within a frame; the
    adjoint visits them in reverse, so memory effects unwind in exactly the right order."""
    b = _Builder(fwd)
    b.active = _active(fwd)
    for i, make in seeds.items():
        b.add(i, make(b.g))
    grad_cells, input_grads = {}, {}
    for i in reversed(tuple(forward_order)):
        nd = fwd.nodes[i]
        a = b.total(i)
        if a is None:
            if nd.op.name not in _WRITERS:
                continue
            a = b.g.constant(0.0)  # a writer still passes on what its readers sent back
        _propagate(b, nd, a, grad_cells, input_grads)
    for cell_id, parts in b.read_adjoints.items():
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        b.g.n(Op.history_write(b.adjoint_cell(fwd.cells[cell_id])), total)
    for ch, parts in sorted(b.input_adjoints.items()):
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        b.g.n(Op.output(ch), total)
    graph, _ = prune_dead(b.g)  # e.g. the gradient of a loss w.r.t. a constant target
    tape_ids = sorted(nd.op.ref_id for nd in graph.nodes if nd.op.name == "tape")
    return Adjoint(graph, tuple(tape_ids), grad_cells, input_grads)


def _active(fwd) -> set[int]:
    """Nodes whose value depends on a parameter or an input (only they need adjoints),
    following data edges and, through cells, from writers to the next frame's readers."""
    from ..analysis.feedback import cell_edges

    succs = [[] for _ in fwd.nodes]
    for nd in fwd.nodes:
        for i in nd.inputs:
            succs[i].append(nd.id)
    for w, r in cell_edges(fwd):
        succs[w].append(r)
    stack = [nd.id for nd in fwd.nodes if nd.op.name in ("param", "input")]
    active = set(stack)
    while stack:
        for s in succs[stack.pop()]:
            if s not in active:
                active.add(s)
                stack.append(s)
    return active


def _propagate(b, nd, a, grad_cells, input_grads):
    op, name = nd.op, nd.op.name
    if op.kind in (PURE, BUFFER) or name == "output":
        out = b.value(nd.id) if name != "output" else None
        grads = op.vjp(a, out, *(b.value(j) for j in nd.inputs))
        for j, gj in zip(nd.inputs, grads):
            b.add(j, gj)
    elif name == "param":
        cell = b.g.alloc()
        grad_cells[op.cell.id] = cell
        b.g.n(Op.grad_accum(cell), a)
    elif name == "input":  # summed per channel below: a channel may be read by several input nodes
        input_grads[op.channel] = op.channel
        b.input_adjoints.setdefault(op.channel, []).append(a)
    elif name == "history_write":
        carried = b.g.n(Op.history_read(b.adjoint_cell(op.cell)))
        b.add(nd.inputs[0], _plus(a, carried))
    elif name == "history_read":
        b.read_adjoints.setdefault(op.cell.id, []).append(a)
    elif name == "memory_read":
        b.memory_op(Op.memory_accum(b.adjoint_cell(op.cell)), b.value(nd.inputs[0]), a)
    elif name == "memory_write":
        taken = b.memory_op(Op.memory_take(b.adjoint_cell(op.cell)), b.value(nd.inputs[0]))
        b.add(nd.inputs[1], _plus(a, taken))
    elif name in ("constant", "tape"):
        pass
    else:
        raise NotImplementedError(f"no gradient for op {name!r} (node {nd.id}); expand it first")


def _plus(a, b):
    """a + b, skipping the zero constant a silent writer starts from."""
    if a.op.name == "constant" and a.op.value == 0.0:
        return b
    return a + b
