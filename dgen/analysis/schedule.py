"""Ordering and block scheduling.

`order`: a topological order of one frame (ties broken by node id, so it is stable).
`schedule_blocks`: the same constraints, but a list scheduler that keeps emitting nodes of
the current kind while any is ready, so neighbouring blocks of one kind fuse:
VECTOR (stateless: whole frame ranges at once), SEQUENTIAL (stateful or in a feedback
cluster: one frame at a time) and BUFFER (needs whole signals: splits the frame loop).
Independent chains inside a sequential block are listed so a backend can interleave them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from .. import errors
from ..errors import describe
from ..ops import BUFFER as BUFFER_OP
from ..ops import STATE

VECTOR, SEQUENTIAL, BUFFER = "vector", "sequential", "buffer"
_PRIORITY = (VECTOR, SEQUENTIAL, BUFFER)  # which kind to open when the current one runs dry


@dataclass(frozen=True)
class Block:
    kind: str
    nodes: tuple[int, ...]
    chains: tuple[tuple[int, ...], ...] = ()  # sequential blocks: independent node groups


@dataclass(frozen=True)
class Schedule:
    blocks: tuple[Block, ...]
    kinds: tuple[str, ...]  # node id -> block kind

    def order(self) -> tuple[int, ...]:
        return tuple(n for b in self.blocks for n in b.nodes)

    def dump(self, graph) -> str:
        lines = [f"schedule: {len(self.blocks)} block(s)"]
        for k, b in enumerate(self.blocks):
            lines.append(f"  block {k} {b.kind} ({len(b.nodes)} nodes)")
            groups = b.chains or (b.nodes,)
            for c, chain in enumerate(groups):
                label = f"    chain {c}: " if b.chains else "    "
                lines.append(label + ", ".join(f"{i}:{graph.nodes[i].op!r}" for i in chain))
        return "\n".join(lines)

    def __str__(self) -> str:
        return "\n".join(f"block {k} {b.kind}: {list(b.nodes)}" for k, b in enumerate(self.blocks))


def node_kinds(graph, feedback) -> tuple[str, ...]:
    in_cluster = feedback.cluster_of()
    kinds = []
    for nd in graph.nodes:
        if nd.op.kind == BUFFER_OP:
            if nd.id in in_cluster:
                raise errors.GraphError(
                    f"{describe(nd)}: a buffer op cannot sit inside a feedback loop "
                    "or between a cell's reads and writes"
                )
            kinds.append(BUFFER)
        elif nd.op.kind == STATE or nd.id in in_cluster:
            kinds.append(SEQUENTIAL)
        else:
            kinds.append(VECTOR)
    return tuple(kinds)


def _raise_loop(graph, deps, left: set[int]):
    """Find one cycle among the unscheduled nodes and name it."""
    start = min(left)
    path, seen, v = [], {}, start
    while v not in seen:
        seen[v] = len(path)
        path.append(v)
        v = min(p for p in deps.preds[v] if p in left)
    cycle = path[seen[v] :][::-1]
    names = " -> ".join(describe(graph.nodes[i]) for i in cycle)
    raise errors.AlgebraicLoopError(f"algebraic loop (no history cell breaks it): {names}")


def _topological(graph, deps, members) -> list[int]:
    """Kahn's order of `members` by their internal dependencies, ties by node id."""
    inside = set(members)
    waiting = {m: sum(1 for p in deps.preds[m] if p in inside) for m in members}
    ready = [m for m, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        m = heapq.heappop(ready)
        out.append(m)
        for s in deps.succs[m]:
            if s in inside:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(ready, s)
    if len(out) < len(members):
        _raise_loop(graph, deps, inside - set(out))
    return out


def order(graph, deps) -> tuple[int, ...]:
    """A plain topological order of one frame."""
    return tuple(_topological(graph, deps, range(len(graph.nodes))))


def _units(graph, feedback):
    """Each cluster is one unit (scheduled whole); every other node is its own unit."""
    unit_of, members = {}, []
    for c in feedback.clusters:
        for n in c:
            unit_of[n] = len(members)
        members.append(list(c))
    for nd in graph.nodes:
        if nd.id not in unit_of:
            unit_of[nd.id] = len(members)
            members.append([nd.id])
    return unit_of, members


def schedule_blocks(graph, deps, feedback) -> Schedule:
    """List scheduling of units: keep emitting the current kind while any unit of it is ready."""
    order(graph, deps)  # raises AlgebraicLoopError naming the cycle, if any
    kinds = node_kinds(graph, feedback)
    unit_of, members = _units(graph, feedback)
    unit_preds = [{unit_of[p] for m in ms for p in deps.preds[m]} - {u} for u, ms in enumerate(members)]
    unit_succs = [set() for _ in members]
    for u, ps in enumerate(unit_preds):
        for p in ps:
            unit_succs[p].add(u)
    waiting = [len(p) for p in unit_preds]
    ready = {k: [] for k in _PRIORITY}
    for u, w in enumerate(waiting):
        if w == 0:
            heapq.heappush(ready[kinds[members[u][0]]], (min(members[u]), u))
    blocks, current, emitted = [], None, []
    while any(ready.values()):
        if not ready.get(current):
            if emitted:
                blocks.append((current, emitted))
            current, emitted = next(k for k in _PRIORITY if ready[k]), []
        _, u = heapq.heappop(ready[current])
        emitted.extend(_topological(graph, deps, members[u]))
        for s in unit_succs[u]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready[kinds[members[s][0]]], (min(members[s]), s))
    if emitted:
        blocks.append((current, emitted))
    built = tuple(Block(k, tuple(m), _chains(graph, m) if k == SEQUENTIAL else ()) for k, m in blocks)
    return Schedule(built, kinds)


def _chains(graph, members) -> tuple[tuple[int, ...], ...]:
    """Weakly connected groups inside a block (data edges and shared cells)."""
    parent = {m: m for m in members}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    by_cell = {}
    for m in members:
        nd = graph.nodes[m]
        for i in nd.inputs:
            if i in parent:
                parent[find(i)] = find(m)
        if nd.op.cell is not None:
            other = by_cell.setdefault(nd.op.cell.id, m)
            parent[find(other)] = find(m)
    groups = {}
    for m in members:
        groups.setdefault(find(m), []).append(m)
    return tuple(tuple(g) for g in sorted(groups.values())) if len(groups) > 1 else ()
