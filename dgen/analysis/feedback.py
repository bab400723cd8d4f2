"""Feedback detection: strongly connected components through cell edges.

The node graph is acyclic as data. A loop closes through state: what a writer stores in
frame n, a reader of the same cell sees in frame n+1 (history_write -> history_read,
memory_write -> memory_read, and their adjoints).

Every node touching one cell must also run in the same frame loop as the others, or a
read would see writes of later frames of the tile. So all users of a cell are tied into a
ring, and with the within-frame dependencies the SCCs are the clusters that run frame by
frame as one unit: feedback loops, and plain delay lines with everything between their
write and their reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import describe

# writer op -> reader op of the same cell, one frame later
CELL_EDGES = {
    "history_write": ("history_read",),
    "memory_write": ("memory_read",),
    "memory_accum": ("memory_take",),
}


@dataclass(frozen=True)
class FeedbackInfo:
    clusters: tuple[tuple[int, ...], ...]  # node ids of each cluster, sorted
    loops: tuple[int, ...] = ()  # indices of clusters that are true feedback (a cell edge inside)

    def cluster_of(self) -> dict[int, int]:
        return {n: k for k, c in enumerate(self.clusters) for n in c}

    def dump(self, graph) -> str:
        if not self.clusters:
            return "feedback: none"
        lines = [f"feedback: {len(self.clusters)} cluster(s), {len(self.loops)} loop(s)"]
        for k, c in enumerate(self.clusters):
            tag = "loop" if k in self.loops else "cells"
            lines.append(f"  cluster {k} ({tag}): " + ", ".join(describe(graph.nodes[i]) for i in c))
        return "\n".join(lines)


def cell_edges(graph):
    """(writer, reader) pairs: the reader sees the writer's value in the next frame."""
    by_cell: dict[tuple[int, str], list[int]] = {}
    for nd in graph.nodes:
        if nd.op.cell is not None:
            by_cell.setdefault((nd.op.cell.id, nd.op.name), []).append(nd.id)
    for (cell, name), writers in by_cell.items():
        for reader_name in CELL_EDGES.get(name, ()):
            for w in writers:
                for r in by_cell.get((cell, reader_name), []):
                    yield w, r


def strongly_connected(n: int, succs) -> list[list[int]]:
    """Tarjan's algorithm, iterative (graphs from autodiff can be deep)."""
    index, low, on_stack, stack, out = [-1] * n, [0] * n, [False] * n, [], []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        work = [(root, iter(succs[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if index[w] < 0:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, iter(succs[w])))
                    advanced = True
                    break
                if on_stack[w]:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


def find_feedback(graph, deps) -> FeedbackInfo:
    succs = [list(s) for s in deps.succs]
    users: dict[int, list[int]] = {}
    for nd in graph.nodes:
        if nd.op.cell is not None:
            users.setdefault(nd.op.cell.id, []).append(nd.id)
    for ring in users.values():
        for a, b in zip(ring, ring[1:] + ring[:1]):
            if a != b:
                succs[a].append(b)
    comps = strongly_connected(len(graph.nodes), succs)
    clusters = tuple(sorted(tuple(c) for c in comps if len(c) > 1))
    member = {n: k for k, c in enumerate(clusters) for n in c}
    from .deps import ancestors

    loops = {
        member[w]
        for w, r in cell_edges(graph)
        if w in member and member[w] == member.get(r) and r in ancestors(graph, w)
    }
    return FeedbackInfo(clusters, tuple(sorted(loops)))
