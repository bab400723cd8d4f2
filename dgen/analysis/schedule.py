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
    in_loop = feedback.cluster_of()
    kinds = []
    for nd in graph.nodes:
        if nd.op.kind == BUFFER_OP:
            if nd.id in in_loop:
                raise errors.GraphError(f"{describe(nd)}: a buffer op cannot sit inside a feedback loop")
            kinds.append(BUFFER)
        elif nd.op.kind == STATE or nd.id in in_loop:
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
    cycle = path[seen[v]:][::-1]
    names = " -> ".join(describe(graph.nodes[i]) for i in cycle)
    raise errors.AlgebraicLoopError(f"algebraic loop (no history cell breaks it): {names}")


def order(graph, deps) -> tuple[int, ...]:
    return tuple(n for b in schedule_blocks(graph, deps, None).blocks for n in b.nodes)


def schedule_blocks(graph, deps, feedback) -> Schedule:
    kinds = node_kinds(graph, feedback) if feedback is not None else (VECTOR,) * len(graph.nodes)
    waiting = [len(p) for p in deps.preds]
    ready = {k: [] for k in _PRIORITY}
    for i, w in enumerate(waiting):
        if w == 0:
            heapq.heappush(ready[kinds[i]], i)
    blocks, current, members = [], None, []
    while any(ready.values()):
        if not ready.get(current):
            if members:
                blocks.append((current, members))
            current, members = next(k for k in _PRIORITY if ready[k]), []
        i = heapq.heappop(ready[current])
        members.append(i)
        for s in deps.succs[i]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready[kinds[s]], s)
    if members:
        blocks.append((current, members))
    left = {i for i, w in enumerate(waiting) if w > 0}
    if left:
        _raise_loop(graph, deps, left)
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
