"""Replace placeholders by the nodes bound to them, in a freshly ordered graph.

Placeholders allow wiring a node before its input exists, so the resolved data graph
may contain a cycle: with no history cell in it, that is an algebraic loop and an error
naming the nodes (by their ids in the user's graph).
"""

from __future__ import annotations

from .. import errors
from ..errors import describe
from .expand import copy_graph


def _target(graph, i, seen=()):
    """Follow placeholder bindings to a real node."""
    nd = graph.nodes[i]
    if nd.op.name != "placeholder":
        return i
    if i not in graph.bindings:
        raise errors.GraphError(f"{describe(nd)}: placeholder was never bound (g.bind(placeholder, node))")
    if i in seen:
        raise errors.AlgebraicLoopError(f"{describe(nd)}: placeholders bound to each other in a cycle")
    return _target(graph, graph.bindings[i], (*seen, i))


def _data_order(graph, real_inputs):
    """Depth-first topological order of the resolved graph; a cycle raises."""
    state, out = {}, []
    for root in range(len(graph.nodes)):
        stack = [(root, iter(real_inputs[root]))]
        if root in state:
            continue
        state[root] = "open"
        path = [root]
        while stack:
            v, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[v] = "done"
                out.append(v)
            elif state.get(nxt) == "open":
                cycle = path[path.index(nxt) :]
                names = " -> ".join(describe(graph.nodes[i]) for i in cycle)
                raise errors.AlgebraicLoopError(f"algebraic loop (no history cell breaks it): {names}")
            elif nxt not in state:
                state[nxt] = "open"
                path.append(nxt)
                stack.append((nxt, iter(real_inputs[nxt])))
    return out


def resolve_placeholders(graph):
    """(graph without placeholders, user node id -> new id); the graph itself when it has none."""
    if not any(nd.op.name == "placeholder" for nd in graph.nodes):
        return graph, {i: i for i in range(len(graph.nodes))}
    real_inputs = [[_target(graph, i) for i in nd.inputs] for nd in graph.nodes]
    order = [i for i in _data_order(graph, real_inputs) if graph.nodes[i].op.name != "placeholder"]

    class _Reordered:  # the same nodes, visited in resolved order with resolved inputs
        sample_rate, cells, parameters = graph.sample_rate, graph.cells, graph.parameters
        order_edges = [(_target(graph, a), _target(graph, b)) for a, b in graph.order_edges]
        nodes = [type(graph.nodes[i])(i, graph.nodes[i].op, tuple(real_inputs[i]), graph) for i in order]

    new, mapping = copy_graph(_Reordered)
    return new, {i: mapping[_target(graph, i)].id for i in range(len(graph.nodes))}
