"""Within-frame dependencies: what must run before what in one frame.

Data edges (input -> node), plus the edges that make state mean what ops.md says:
- history_read(c) runs before history_write(c), so every read sees the previous frame;
- `seq(a, b, ...)`: each stateful node that b needs (and a does not) runs after a;
- edges a graph asks for explicitly (`graph.order_edges`, used by autodiff).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import STATE


@dataclass(frozen=True)
class Dependencies:
    preds: tuple[frozenset[int], ...]  # node -> nodes that run before it in a frame
    succs: tuple[frozenset[int], ...]


def ancestors(graph, root: int) -> set[int]:
    seen, stack = {root}, [root]
    while stack:
        for i in graph.nodes[stack.pop()].inputs:
            if i not in seen:
                seen.add(i)
                stack.append(i)
    return seen


def _seq_edges(graph, node):
    xs = node.inputs
    for before, after in zip(xs, xs[1:]):
        done_first = ancestors(graph, before)
        # only effects on the same cells are ordered: ordering other cells' nodes too would
        # make false loops (delays whose times come from other delays)
        cells = {graph.nodes[m].op.cell.id for m in done_first if graph.nodes[m].op.kind == STATE}
        for m in ancestors(graph, after) - done_first:
            op = graph.nodes[m].op
            # a history_read always sees the previous frame: no seq can move it after a write
            if op.kind == STATE and op.name != "history_read" and op.cell.id in cells:
                yield before, m


def _history_edges(graph):
    reads, writes = {}, {}
    for nd in graph.nodes:
        if nd.op.name == "history_read":
            reads.setdefault(nd.op.cell.id, []).append(nd.id)
        elif nd.op.name == "history_write":
            writes[nd.op.cell.id] = nd.id
    for cell, w in writes.items():
        for r in reads.get(cell, []):
            yield r, w


def dependencies(graph) -> Dependencies:
    preds = [set(nd.inputs) for nd in graph.nodes]
    extra = list(_history_edges(graph)) + list(getattr(graph, "order_edges", ()))
    for nd in graph.nodes:
        if nd.op.name == "seq":
            extra.extend(_seq_edges(graph, nd))
    for before, after in extra:
        if before != after:
            preds[after].add(before)
    succs = [set() for _ in graph.nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].add(i)
    return Dependencies(tuple(frozenset(p) for p in preds), tuple(frozenset(s) for s in succs))
