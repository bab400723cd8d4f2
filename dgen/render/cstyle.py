"""What every C-like renderer (C SIMD now, CUDA later) shares: how a scheduled graph splits
into stages, which values live where, and how a node is spelled.

A *stage* is a run of vector/sequential blocks between buffer blocks; it becomes one
generated function over all frames. Buffer blocks (whole-signal ops such as the spectral
loss) run in Python between stages. Inside a stage every node value lives in one of:

- a local of its block's frame loop (used only inside that block),
- a tile buffer (`b<id>`: used by a later block of the same stage),
- a full-length array passed in (`ext[k]`): outputs, kept values, values another stage or a
  buffer op reads, and the inputs, tapes and earlier stages' values this stage reads.

Sources are never stored: constants are literals, params are read once per call,
inputs and tapes are external arrays. Pure nodes of constants and params only ("uniforms",
e.g. filter coefficients from a fixed cutoff) are computed once per call, not per frame.
Backend differences are class attributes and tables.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..analysis import BUFFER
from ..errors import describe
from ..ops import PURE

SOURCES = ("constant", "input", "param", "tape")
EXTERNAL_SOURCES = ("input", "tape")  # read from arrays the caller passes
EXPANDED = ("phasor", "accum", "latch")  # pipeline.plan(expand=True) rewrites these away
RESOLVED = ("placeholder",)  # pipeline.plan replaces these by the nodes bound to them
REGISTER_CELL_OPS = ("history_read", "history_write", "grad_accum")  # cell kept in a local


@dataclass(frozen=True)
class Slot:
    """One entry of a stage's `ext` pointer array: a full-length signal.

    kind: "input" (key = channel), "tape" (key = forward node id), "in" (a value made by an
    earlier step), "out" (a value this stage makes) or "output" (key = channel: an output
    node nothing else reads, written straight into the program's result, which with
    instances in lanes is instance-major); `node` is the node it belongs to."""

    kind: str
    key: int
    node: int


@dataclass(frozen=True)
class Stage:
    """One generated function: blocks, the external arrays it touches, where values live."""

    name: str
    blocks: tuple  # schedule Blocks, in order
    slots: tuple[Slot, ...]
    buffered: frozenset  # node ids with a tile buffer
    params: tuple[int, ...]  # param node ids read by this stage
    uniforms: tuple[int, ...]  # invariant pure nodes it computes once per call, in order
    cells: tuple[int, ...]  # cell ids kept in locals (history, gradient accumulators)
    invariant: frozenset = frozenset()  # every invariant node of the graph (never in a frame loop)
    alias: dict = field(default_factory=dict)  # input/tape node -> the node whose slot it reads

    def written(self, slot) -> bool:
        return slot.kind in ("out", "output")

    def slot_of(self) -> dict[int, int]:
        """node id -> its slot (input/tape nodes through their alias)."""
        slot = {s.node: k for k, s in enumerate(self.slots)}
        return {**slot, **{i: slot[a] for i, a in self.alias.items()}}


@dataclass(frozen=True)
class Step:
    kind: str  # "stage" or "buffer"
    stage: Stage | None = None
    block: object = None  # the buffer Block


def float_literal(value: float) -> str:
    """The exact float32 `value` as a C literal (inf for values beyond float32)."""
    with np.errstate(over="ignore"):
        f = np.float32(value)
    if np.isinf(f):
        return "INFINITY" if f > 0 else "(-INFINITY)"
    s = str(f)
    if not any(c in s for c in ".e"):
        s += ".0"
    return f"({s}f)" if s.startswith("-") else f"{s}f"


def op_comment(op) -> str:
    """The op as a C comment's text (no `*/` inside)."""
    return repr(op).replace("*/", "* /")


def split_stages(graph, schedule, keep=()) -> tuple[Step, ...]:
    """Steps in run order: compiled stages and the buffer blocks between them."""
    runs = []  # ("buffer", Block) or ("stage", [Block, ...])
    for block in schedule.blocks:
        if block.kind == BUFFER:
            runs.append(("buffer", block))
        elif runs and runs[-1][0] == "stage":
            runs[-1][1].append(block)
        else:
            runs.append(("stage", [block]))
    consumers = [[] for _ in graph.nodes]
    for nd in graph.nodes:
        for i in nd.inputs:
            consumers[i].append(nd.id)
    keep = set(keep) | {nd.id for nd in graph.nodes if nd.op.name == "output"}
    buffer_users = {i for kind, b in runs if kind == "buffer" for n in b.nodes for i in graph.nodes[n].inputs}
    invariant = invariant_nodes(graph, keep, buffer_users)
    steps = []
    for kind, item in runs:
        if kind == "buffer":
            steps.append(Step("buffer", block=item))
        else:
            name = f"dgen_stage{sum(s.kind == 'stage' for s in steps)}"
            steps.append(Step("stage", stage=_stage(graph, name, item, consumers, keep, invariant)))
    return tuple(steps)


def invariant_nodes(graph, keep, buffer_users) -> frozenset:
    """Pure nodes whose inputs are all constants, params or invariant: one value per call,
    computed once at the top of a stage instead of per frame. Values wanted as whole signals
    (kept, outputs, read by buffer ops) stay per frame."""
    inv = set()
    for nd in graph.nodes:  # inputs always have smaller ids
        name = nd.op.name
        if name in ("constant", "param"):
            inv.add(nd.id)
        elif (
            nd.op.kind == PURE
            and name != "output"
            and nd.id not in keep
            and nd.id not in buffer_users
            and all(i in inv for i in nd.inputs)
        ):
            inv.add(nd.id)
    return frozenset(inv)


def _stage(graph, name, blocks, consumers, keep, invariant) -> Stage:
    block_of = {n: b for b, block in enumerate(blocks) for n in block.nodes}
    slots, buffered, cells, uniform = [], set(), [], set()
    sources, outside = {}, set()  # external sources / values of earlier steps read here
    alias = {}  # source node -> the node standing for all sources of its channel or tape

    def need_uniform(i):
        stack = [i]
        while stack:
            j = stack.pop()
            if j not in uniform:
                uniform.add(j)
                stack.extend(graph.nodes[j].inputs)

    for block in blocks:
        for n in block.nodes:
            nd = graph.nodes[n]
            if nd.op.name in SOURCES or n in invariant:
                continue  # spelled where used
            if nd.op.name in REGISTER_CELL_OPS and nd.op.cell.id not in cells:
                cells.append(nd.op.cell.id)
            for i in nd.inputs:
                op = graph.nodes[i].op
                if i in invariant:
                    need_uniform(i)
                elif op.name in EXTERNAL_SOURCES:
                    key = op.channel if op.name == "input" else op.ref_id
                    alias[i] = sources.setdefault((op.name, key), i)
                elif i not in block_of:
                    outside.add(i)
            users = consumers[n]
            if any(c in block_of and block_of[c] != block_of[n] for c in users):
                buffered.add(n)
            if nd.op.name == "output" and not users:
                slots.append(Slot("output", nd.op.channel, n))
            elif n in keep or any(c not in block_of for c in users):
                slots.append(Slot("out", n, n))
    slots += [Slot(kind, key, i) for (kind, key), i in sorted(sources.items(), key=lambda kv: kv[1])]
    slots += [Slot("in", i, i) for i in sorted(outside)]
    params = tuple(i for i in sorted(uniform) if graph.nodes[i].op.name == "param")
    uniforms = tuple(i for i in sorted(uniform) if graph.nodes[i].op.name not in SOURCES)
    return Stage(
        name, tuple(blocks), tuple(slots), frozenset(buffered), params, uniforms, tuple(cells), invariant, alias
    )


def _writes(graph, nodes) -> dict:
    """cell -> the values its history_writes in `nodes` store."""
    writes = {}
    for n in nodes:
        if graph.nodes[n].op.name == "history_write":
            writes.setdefault(graph.nodes[n].op.cell.id, []).append(graph.nodes[n].inputs[0])
    return writes


def _cells_of(graph, local, writes, t) -> frozenset:
    """The history cells whose state value t of one frame loop depends on (through writes)."""
    seen, stack, out = set(), [t], set()
    while stack:
        j = stack.pop()
        if j in local and j not in seen:
            seen.add(j)
            op = graph.nodes[j].op
            if op.name == "history_read":
                out.add(op.cell.id)
                stack += writes.get(op.cell.id, [])
            stack += graph.nodes[j].inputs
    return frozenset(out)


def lane_alike(graph, nodes, same, targets) -> dict:
    """Values of one frame loop (instances in lanes) that are the same in every lane for a whole
    call once some history cells start it so: pure nodes of `same` inputs (constants, uniforms
    of constants) and such values, and reads of history cells whose every write is one (every
    op is the same function in each lane). Returns, for each of `targets` that is such a
    value, the cells it depends on: a delay line's read and write positions, counted by a
    phasor of a constant frequency, depend on the phasor's cell."""
    writes = _writes(graph, nodes)
    cells = {graph.nodes[n].op.cell.id for n in nodes if graph.nodes[n].op.name == "history_read"}
    while True:  # drop the cells one of whose writes is not alike, until none is left
        alike = set()
        for n in nodes:
            op, ins = graph.nodes[n].op, graph.nodes[n].inputs
            if op.name == "history_read" and op.cell.id in cells:
                alike.add(n)
            elif (op.kind == PURE or op.name == "history_write") and all(i in alike or same(i) for i in ins):
                alike.add(n)
        bad = {c for c in cells if any(i not in alike and not same(i) for i in writes.get(c, ()))}
        if not bad:
            break
        cells -= bad
    return {t: _cells_of(graph, set(nodes), writes, t) for t in targets if t in alike or same(t)}


_GROW = 1.0 + 2.0**-20  # float32 rounding of a sum or product: bounds grow by more than that


def _bound(graph, n, bound, cells) -> float | None:
    """A bound on |value of n| (NaN aside) from its inputs' `bound`s and `cells` (history cell
    -> bound of its state), or None."""
    nd, name = graph.nodes[n], graph.nodes[n].op.name
    b = [bound.get(i) for i in nd.inputs]
    if name == "history_read":
        return cells.get(nd.op.cell.id)
    if name in ("sin", "cos") or (
        name == "sub"
        and graph.nodes[nd.inputs[1]].op.name == "floor"
        and graph.nodes[nd.inputs[1]].inputs[0] == nd.inputs[0]
    ):
        return 1.0  # x - floor(x) is in [0, 1] (NaN where x is not finite)
    if name == "gswitch":
        b = b[1:]
    if not b or None in b:
        return None
    if name in ("add", "sub", "mul"):
        return (b[0] + b[1] if name != "mul" else b[0] * b[1]) * _GROW
    if name in ("gswitch", "history_write", "abs", "output", "floor"):
        return max(b) + (name == "floor")
    return None


def sin_near(graph, nodes, limit=4096.0) -> dict:
    """`sin` nodes of one frame loop whose argument stays within +-limit (where the inline sin
    needs no range check) once some history cells start the call within bounds: a cell whose
    every write is bounded (a phasor's x - floor(x): 1) given the cells proven before it.
    Returns sin node -> {cell: bound} to check once per call."""
    writes, cells = _writes(graph, nodes), {}
    while True:
        bound = {
            i: abs(float(graph.nodes[i].op.value))
            for n in nodes
            for i in graph.nodes[n].inputs
            if graph.nodes[i].op.name == "constant" and np.isfinite(graph.nodes[i].op.value)
        }
        for n in nodes:
            bound[n] = _bound(graph, n, bound, cells)
        new = {
            c: max(bound.get(i) for i in ins)
            for c, ins in writes.items()
            if c not in cells and all(bound.get(i) is not None for i in ins)
        }
        if not new:
            break
        cells.update(new)
    near, local = {}, set(nodes)
    for n in nodes:
        x = graph.nodes[n].inputs[0] if graph.nodes[n].op.name == "sin" else None
        if x is not None and bound.get(x) is not None and bound[x] <= limit:
            near[n] = {c: cells[c] for c in _cells_of(graph, local, writes, x) if c in cells}
    return near


# ---- text of C frame loops (instances in lanes)


def unused_locals(body, names) -> list[str]:
    """`(void)x;` for locals no statement reads (an op may ignore operands, as seq does)."""
    code = re.sub(r"/\*.*?\*/", "", "\n".join(body))
    counts = Counter(re.findall(r"\b[xv]\d+\b", code))
    return [f"(void){name};" for name in names if counts[name] < 2]


GROUP_LOCAL = re.compile(r"\b([vxsbpul]\d+|gw|at|kn)\b")


def for_groups(body, U, per_group_uniforms) -> list[str]:
    """`body`, written for one instance group, for U groups: a line naming a per-group local
    (values v/x, state s, params p, tile buffers b, per-instance uniforms u, per-call flags
    l<cell> and kn, the lane offset gw and frame address at) is repeated once per group with
    the names suffixed `_<group>`; a line naming none (loop heads, braces, tile bounds) is
    written once."""

    def rename(line, u):
        def sub(m):
            name = m.group(1)
            return name if name[0] == "u" and name not in per_group_uniforms else f"{name}_{u}"

        return GROUP_LOCAL.sub(sub, line)

    out = []
    for line in body:
        copies = [rename(line, u) for u in range(U)]
        out += copies if copies[0] != line else [line]
    return out


def all_flags(prefix, cells) -> str:
    """The C condition that all per-call flags <prefix><cell> hold."""
    return " & ".join(f"{prefix}{c}" for c in sorted(cells)) or "1"


class CStyleRenderer:
    """Spelling of nodes in C-like languages. Subclasses set the attributes and loops."""

    name = "C"
    restrict = "restrict"
    # stateful ops: one statement each; {T} value type, {p} helper prefix (sf/vf), {n} node id,
    # {s} the cell's local, {base} the cell's memory, {size} its size, {st} the lane stride
    # argument (empty for scalars), {0}, {1} the operands
    state_code = {
        "history_read": "{T} v{n} = {s};",
        "history_write": "{T} v{n} = {0}; {s} = v{n};",
        "grad_accum": "{T} v{n} = {0}; {s} += v{n};",
        "memory_read": "{T} v{n} = {p}_mread({base}, {0}, {size}{st});",
        "memory_write": "{T} v{n} = {1}; {p}_mwrite({base}, {0}, {size}{st}, v{n});",
        "memory_accum": "{T} v{n} = {1}; {p}_maccum({base}, {0}, {size}{st}, v{n});",
        "memory_take": "{T} v{n} = {p}_mtake({base}, {0}, {size}{st});",
    }

    @classmethod
    def renders(cls, op) -> str:
        """How this backend handles an op: "source", "pure", "state", "buffer", "expanded",
        "resolved" (rewritten away before any backend sees it), or "" (it cannot)."""
        if op.name in RESOLVED:
            return "resolved"
        if op.name in SOURCES or op.name == "output":
            return "source" if op.name in SOURCES else "pure"
        if op.kind == PURE:
            return "pure"
        if op.name in cls.state_code:
            return "state"
        if op.kind == "buffer":
            return "buffer"
        if op.name in EXPANDED:
            return "expanded"
        return ""

    def check(self, graph) -> None:
        for nd in graph.nodes:
            how = self.renders(nd.op)
            if how in ("expanded", "resolved"):
                raise NotImplementedError(
                    f"{describe(nd)}: op {nd.op.name!r} reaches the {self.name} "
                    "renderer; plan the graph with pipeline.plan(expand=True)"
                )
            if not how:
                raise NotImplementedError(f"no {self.name} rendering for op {nd.op.name!r} ({describe(nd)})")

    def pure_expr(self, nd, p: str, args: list[str]) -> str:
        if nd.op.name == "output":
            return args[0]
        return nd.op.c_render(p, args)

    def state_stmt(self, nd, T: str, p: str, args: list[str], base: str, st: str) -> str:
        cell = nd.op.cell
        return self.state_code[nd.op.name].format(
            *args, T=T, p=p, n=nd.id, s=f"s{cell.id}", base=base, size=cell.size, st=st
        )
