"""The adjoint graph trimmed for `forward_backward`, where only parameter gradients are wanted.

`differentiate` builds an adjoint that also returns d objective / d inputs (output nodes of
the backward graph, what `vjp` needs) and reads every forward value it uses from the tape,
even values that are not signals. For a training step that costs more than the adjoint
arithmetic itself (with B = 64 instances, each taped signal is 1 MiB):
- the input gradients: dropped, with every node that only fed them;
- tapes of `param` nodes: a parameter is one value per instance, so the backward graph reads
  it as a `param` of its own memory (the caller copies the row in) instead of a whole signal
  per step;
- tapes of `input` nodes: the backward graph reads the same input channel, so the backward
  kernel takes the caller's input arrays as they are (instances in lanes: the instance-major
  block, transposed tile by tile inside the kernel) instead of a transposed copy per step.
The arithmetic is unchanged: the same nodes compute the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import Op
from ..transform.expand import copy_graph, prune_dead


@dataclass
class LeanAdjoint:
    graph: object  # the backward graph
    tape_ids: tuple[int, ...]  # forward nodes still read from the tape
    param_cells: dict  # backward param cell id -> forward param cell id (copied in per step)
    grad_cells: dict  # forward param cell id -> gradient cell, as in Adjoint


def lean_adjoint(adj, forward_graph) -> LeanAdjoint:
    bwd = adj.graph
    param_cells = {}  # forward cell id -> backward cell

    def rewrite(new, nd, ins):
        if nd.op.name != "tape":
            return None
        src = forward_graph.nodes[nd.op.ref_id].op
        if src.name == "input":
            return new.n(Op.input(src.channel))
        if src.name == "param":
            if src.cell.id not in param_cells:
                param_cells[src.cell.id] = new.alloc(1)
            return new.n(Op.param(param_cells[src.cell.id], src.label))
        return None

    no_outputs = {nd.id for nd in bwd.nodes if nd.op.name != "output"}
    trimmed, _ = copy_graph(bwd, rewrite, keep=no_outputs)
    graph, _ = prune_dead(trimmed)  # cells (and so the gradient cells' ids) are kept as they are
    tape_ids = tuple(sorted(nd.op.ref_id for nd in graph.nodes if nd.op.name == "tape"))
    used = {nd.op.cell.id for nd in graph.nodes if nd.op.name == "param"}
    cells = {bc.id: fc for fc, bc in param_cells.items() if bc.id in used}
    return LeanAdjoint(graph, tape_ids, cells, adj.grad_cells)
