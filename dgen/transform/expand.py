"""Rewrite phasor, accum and latch into history_read/write plus pure ops.

Compiled backends and autodiff then only need the state primitives; the reference keeps
the first-class ops, so comparing the two checks each expansion against its formula.
"""

from __future__ import annotations

from ..graph import Graph


def copy_graph(graph, rewrite=None, keep=None):
    """A new graph with the same cells and parameters; `rewrite(new, node, inputs)` may
    return a replacement node (or None to copy); `keep` (a set of ids) drops the others.
    Returns (new graph, old id -> new node)."""
    new = Graph(graph.sample_rate)
    new.cells = list(graph.cells)
    new.parameters = list(graph.parameters)
    new.order_edges = []
    mapping = {}
    for nd in graph.nodes:
        if keep is not None and nd.id not in keep:
            continue
        ins = [mapping[i] for i in nd.inputs]
        made = rewrite(new, nd, ins) if rewrite else None
        mapping[nd.id] = made if made is not None else new.n(nd.op, *ins)
    for before, after in getattr(graph, "order_edges", ()):
        if before in mapping and after in mapping:
            new.order_edges.append((mapping[before].id, mapping[after].id))
    return new, mapping


def expand_stateful(graph):
    def rewrite(new, nd, ins):
        if nd.op.name in ("phasor", "accum", "latch"):
            return nd.op.expand(new, graph.sample_rate, *ins)
        return None

    return copy_graph(graph, rewrite)


EFFECTS = ("output", "history_write", "memory_write", "memory_accum", "memory_take", "grad_accum")


def prune_dead(graph):
    """Drop nodes that reach no effect (output, state write, gradient accumulator)."""
    from ..analysis.deps import ancestors

    live = set()
    for nd in graph.nodes:
        if nd.op.name in EFFECTS and nd.id not in live:
            live |= ancestors(graph, nd.id)
    return copy_graph(graph, keep=live)
