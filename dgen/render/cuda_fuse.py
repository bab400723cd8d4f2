"""Kernel fusion for the CUDA renderer: which of a stage's blocks share a kernel.

A chain of a sequential block whose history cells form no loop (a delay line x[n-1], x[n-2];
a backward graph's reversed delays) needs no frame loop. Its read at frame n is the write's
value at frame n-1 (ops.md), which a thread recomputes from the inputs at frame n-1, and so
on down the chain, at most MAX_DEPTH frames back. Such chains join the vector blocks around
them: a run of vector blocks and feed-forward chains is one kernel (a vector block that
reads nothing of the sequential blocks before it joins the vector kernel ahead of them), and
values that only crossed between those blocks stay in registers instead of going through
memory. The cells' end state (the last frame's writes) is stored by an `_end` kernel run
after it, so no thread writes a cell that another still reads as its start value.

Gradient accumulators (s += x every frame; what a backward graph sums into parameter
gradients) join the vector kernel of their values the same way when the program may
reassociate sums: each thread keeps the sum over its frames, writes it to a per-lane scratch
row, and the `_end` kernel adds the rows to the cell in a fixed order (the same result on
every run). A small vector block of cheap ops that only the next sequential block reads is
folded into that block's frame loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis import SEQUENTIAL, VECTOR
from ..ops import PURE
from .cstyle import SOURCES, op_comment

MAX_DEPTH = 8  # deeper delay chains stay sequential: each level recomputes its cone
MAX_PROLOGUE = 16  # nodes of a vector unit folded into the sequential unit after it
# ops a folded prologue may use: a division or a math function in a scan's frame loop stalls
# its loads (the seed's gradient accumulator: 0.05 -> 0.065 ms at B = 1024 on an H200)
CHEAP_OPS = ("add", "sub", "mul", "mix", "gswitch", "min", "max", "abs", "output")
HISTORY = ("history_read", "history_write")


@dataclass(frozen=True)
class Unit:
    """One kernel's nodes: a vector run (with its feed-forward cells and accumulators) or a
    sequential block."""

    kind: str
    nodes: tuple[int, ...]
    chains: tuple[tuple[int, ...], ...] = ()  # sequential: independent node groups
    cells: tuple[int, ...] = ()  # vector: feed-forward history cells (end state to store)
    accs: tuple[int, ...] = ()  # vector: gradient accumulator cells (per-lane sums, then added up)


def kernel_units(graph, stage, reassociate=False) -> list[Unit]:
    """The stage's kernels in run order: runs of vector blocks, feed-forward chains and (when
    sums may be reassociated) gradient accumulators fused, the other chains of a sequential
    block one sequential kernel."""
    cell_nodes = {}
    for nd in graph.nodes:
        if nd.op.cell is not None:
            cell_nodes.setdefault(nd.op.cell.id, set()).add(nd.id)
    units: list[Unit] = []
    for block in stage.blocks:
        nodes = [n for n in block.nodes if graph.nodes[n].op.name not in SOURCES and n not in stage.invariant]
        if not nodes:
            continue
        if block.kind != SEQUENTIAL:
            _join(graph, units, Unit(VECTOR, tuple(nodes)))
            continue
        chains = [c for c in ([n for n in ch if n in set(nodes)] for ch in block.chains or (nodes,)) if c]
        rest = []
        for chain in chains:
            accs = accumulator_cells(graph, chain, cell_nodes) if reassociate else None
            cells = feedforward_cells(graph, chain, cell_nodes)
            if accs is not None:
                _join(graph, units, Unit(VECTOR, tuple(chain), accs=tuple(accs)))
            elif cells is not None:
                _join(graph, units, Unit(VECTOR, tuple(chain), cells=tuple(cells)))
            else:
                rest.append(chain)
        if rest:
            kept = {n for c in rest for n in c}
            groups = tuple(map(tuple, rest)) if len(rest) > 1 else ()
            _absorb(graph, stage, units, Unit(SEQUENTIAL, tuple(n for n in nodes if n in kept), groups))
    return units


def accumulator_cells(graph, nodes, cell_nodes) -> list[int] | None:
    """The cells of a chain of gradient accumulators alone (s += x every frame, nothing else
    touching the cell), or None."""
    if any(graph.nodes[n].op.name != "grad_accum" for n in nodes):
        return None
    cells = [graph.nodes[n].op.cell.id for n in nodes]
    return cells if all(cell_nodes[c] <= set(nodes) for c in cells) else None


def _absorb(graph, stage, units, seq) -> None:
    """Append a sequential unit, with the vector unit before it inside when that is a small
    prologue (at most MAX_PROLOGUE cheap nodes, no cells) whose values only this unit reads,
    made of no more arrays than it replaces: each frame computes them where they are used (in
    every pass of a scan) instead of a kernel writing whole signals for one reader."""
    last = units[-1] if units else None
    if (
        last is None
        or last.kind != VECTOR
        or last.cells
        or last.accs
        or len(last.nodes) > MAX_PROLOGUE
        or any(graph.nodes[n].op.name not in CHEAP_OPS for n in last.nodes)
    ):
        units.append(seq)
        return
    local, inside = set(last.nodes), {*last.nodes, *seq.nodes}
    users = {nd.id for nd in graph.nodes if any(i in local for i in nd.inputs)}
    outs = {s.node for s in stage.slots if stage.written(s)}
    more_arrays = len(_arrays_read(graph, stage, inside)) > len(_arrays_read(graph, stage, seq.nodes))
    if not users <= inside or outs & local or more_arrays:  # more arrays: every scan pass reads them
        units.append(seq)
        return
    groups = tuple(
        (*[n for n in last.nodes if n in cone(graph, local, [i for m in ch for i in graph.nodes[m].inputs])], *ch)
        for ch in seq.chains
    )
    units[-1] = Unit(SEQUENTIAL, (*last.nodes, *seq.nodes), groups)


def _join(graph, units, run) -> None:
    """Add a vector run to the latest vector unit, moved ahead of the sequential units after
    that one when it reads none of their values, and unless the joined kernel would recompute
    more than MAX_DEPTH frames back (delays chained through vector blocks); else append it."""
    skipped = set()
    for j in range(len(units) - 1, -1, -1):
        if units[j].kind == VECTOR:
            last = units[j]
            joined = Unit(VECTOR, last.nodes + run.nodes, cells=last.cells + run.cells, accs=last.accs + run.accs)
            if fused_depth(graph, joined.nodes) > MAX_DEPTH:  # chains joined end to end reach further back
                break
            units[j] = joined
            return
        skipped |= set(units[j].nodes)
        if any(i in skipped for n in run.nodes for i in graph.nodes[n].inputs):
            break
    units.append(run)


def _arrays_read(graph, stage, nodes) -> set[int]:
    """The arrays a kernel of these nodes would read (inputs and tapes through their alias)."""
    local = set(nodes)
    inputs = {i for n in local for i in graph.nodes[n].inputs}
    return {stage.alias.get(i, i) for i in inputs - local if i not in stage.invariant}


def feedforward_cells(graph, nodes, cell_nodes) -> list[int] | None:
    """The history cells of a chain that has no loop through them, or None: pure ops and
    history reads/writes only, every read and write of its cells inside the chain, and no read
    deeper than MAX_DEPTH frames behind the values it is made of."""
    local = set(nodes)
    if any(graph.nodes[n].op.kind != PURE and graph.nodes[n].op.name not in HISTORY for n in nodes):
        return None
    cells = sorted({graph.nodes[n].op.cell.id for n in nodes if graph.nodes[n].op.name in HISTORY})
    if any(not cell_nodes[c] <= local for c in cells):
        return None
    writes = cell_writes(graph, nodes)
    depth = {}  # cell -> frames its reads reach back; -1 while being computed (a loop)

    def reach(c):
        if depth.get(c) == -1:
            return None
        if c not in depth:
            depth[c] = -1
            below = [reach(d) for d in cone_cells(graph, local, [writes[c]])] if c in writes else []
            if None in below:
                return None
            depth[c] = 1 + max(below, default=0)
        return depth[c]

    reached = [reach(c) for c in cells]
    return None if None in reached or max(reached, default=0) > MAX_DEPTH else cells


def cell_writes(graph, nodes) -> dict[int, int]:
    """cell -> its history_write node among `nodes`."""
    return {graph.nodes[n].op.cell.id: n for n in nodes if graph.nodes[n].op.name == "history_write"}


def cone(graph, local, roots) -> set[int]:
    """The roots and every local node they are computed from (within one frame)."""
    seen, stack = set(), [r for r in roots if r in local]
    while stack:
        j = stack.pop()
        if j not in seen:
            seen.add(j)
            stack += [i for i in graph.nodes[j].inputs if i in local]
    return seen


def cone_cells(graph, local, roots) -> set[int]:
    """Cells whose history_read the roots' values of one frame read."""
    return {graph.nodes[n].op.cell.id for n in cone(graph, local, roots) if graph.nodes[n].op.name == "history_read"}


def fused_depth(graph, nodes) -> int:
    """How many frames back a vector kernel of these nodes recomputes."""
    return len(frame_levels(graph, nodes, nodes)) - 1


def frame_levels(graph, nodes, roots) -> list[set[int]]:
    """levels[k]: the nodes a frame evaluates k frames back (k = 0: the frame itself) to get
    the roots; a read at level k is its cell's write at level k + 1."""
    local, writes = set(nodes), cell_writes(graph, nodes)
    levels = [cone(graph, local, roots)]
    while True:
        reads = {graph.nodes[n].op.cell.id for n in levels[-1] if graph.nodes[n].op.name == "history_read"}
        deeper = [writes[c] for c in sorted(reads) if c in writes]
        if not deeper:
            return levels
        levels.append(cone(graph, local, deeper))


class FusedFrame:
    """One frame of a vector unit's kernel: every value the roots need, the deepest frame
    first (`i{k}` = k frames back, `ok{k}` whether that frame exists; a read of a frame before
    the call's first is the cell's start value `s{c}`)."""

    def __init__(self, writer, unit):
        self.w, self.g, self.unit, self.local = writer, writer.g, unit, set(unit.nodes)
        self.writes = cell_writes(self.g, unit.nodes)
        self.back = "+" if writer.reverse else "-"  # a backward graph runs its frames last first

    def code(self, roots, reads, sums=True) -> list[str]:
        """sums: the frame adds its accumulators' values to the lane's sums (the main kernel;
        the `_end` kernel recomputes the last frame only for the cells' end state)."""
        levels = frame_levels(self.g, self.unit.nodes, roots)
        return [line for k in reversed(range(len(levels))) for line in self.level(k, levels[k], reads, sums)]

    def level(self, k, need, reads, sums) -> list[str]:
        used = {self.w.src(i) for n in need for i in self.g.nodes[n].inputs}
        if k:
            ok = f"i{k} >= 0" if self.back == "-" else f"i{k} < frames"
            L = [f"const int i{k} = i {self.back} {k};", f"const bool ok{k} = {ok};"]
            L += [f"const float x{r}_{k} = ok{k} ? a{r}[(long long)i{k} * B + b] : 0.0f;" for r in reads if r in used]
        else:
            L = [f"const float x{r} = a{r}[at];" for r in reads if r in used]
        for n in self.unit.nodes:
            if n in need:
                L.append(self.statement(self.g.nodes[n], k, sums and k == 0))
        return L

    def statement(self, nd, k, add_to_sums) -> str:
        sfx, name = f"_{k}" if k else "", nd.op.name
        args = [self.ref(i, sfx) for i in nd.inputs]
        if name == "history_read":
            c = nd.op.cell.id
            w = self.writes.get(c)
            expr = f"s{c}" if w is None else f"ok{k + 1} ? v{w}_{k + 1} : s{c}"
        elif name == "history_write":
            expr = args[0]
        elif name == "grad_accum":  # its value is its input; the main kernel's frame adds it to the lane's sum
            tail = f" r{nd.op.cell.id} += v{nd.id};" if add_to_sums else ""
            return f"const float v{nd.id}{sfx} = {args[0]};{tail} /* {op_comment(nd.op)} */"
        else:
            expr = self.w.r.pure_expr(nd, "sf", args)
        return f"const float v{nd.id}{sfx} = {expr}; /* {op_comment(nd.op)} */"

    def ref(self, i, sfx) -> str:
        if i in self.local:
            return f"v{i}{sfx}"
        if self.g.nodes[i].op.name == "constant" or i in self.w.st.invariant:
            return self.w.ref(i, ())
        return f"x{self.w.src(i)}{sfx}"
