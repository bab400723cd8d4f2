"""Feedback detection: strongly connected components through cell edges.

The node graph is acyclic as data. A loop closes through state: what a writer stores in
frame n, a reader of the same cell sees in frame n+1 (history_write -> history_read,
memory_write -> memory_read, and their adjoints). Adding those edges and finding SCCs
gives the clusters that must run frame by frame, as one unit.
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
    clusters: tuple[tuple[int, ...], ...]  # node ids of each feedback loop, sorted

    def cluster_of(self) -> dict[int, int]:
        return {n: k for k, c in enumerate(self.clusters) for n in c}

    def dump(self, graph) -> str:
        if not self.clusters:
            return "feedback: none"
        lines = [f"feedback: {len(self.clusters)} cluster(s)"]
        for k, c in enumerate(self.clusters):
            lines.append(f"  cluster {k}: " + ", ".join(describe(graph.nodes[i]) for i in c))
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


def find_feedback(graph) -> FeedbackInfo:
    succs = [[] for _ in graph.nodes]
    for nd in graph.nodes:
        for i in nd.inputs:
            succs[i].append(nd.id)
    loops = set()
    for w, r in cell_edges(graph):
        succs[w].append(r)
        if w == r:
            loops.add(w)
    comps = strongly_connected(len(graph.nodes), succs)
    clusters = [tuple(c) for c in comps if len(c) > 1 or c[0] in loops]
    return FeedbackInfo(tuple(sorted(clusters)))
