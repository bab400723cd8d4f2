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
  block, transposed tile by tile inside the kernel) instead of a transposed copy per step;
- tapes of per-call invariants (pure functions of parameters and constants, such as `1 - a`
  or a biquad's coefficients): the backward graph recomputes them from its own `param` nodes,
  where the scheduler makes them uniforms (once per call), instead of a whole signal written
  by the forward pass and read back.
The arithmetic is unchanged: the same nodes compute the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import PURE, Op
from ..pipeline import _debug, plan
from ..transform.expand import copy_graph, prune_dead


@dataclass
class LeanAdjoint:
    graph: object  # the backward graph
    tape_ids: tuple[int, ...]  # forward nodes still read from the tape
    param_cells: dict  # backward param cell id -> forward param cell id (copied in per step)
    grad_cells: dict  # forward param cell id -> gradient cell, as in Adjoint


def invariant_nodes(graph) -> set[int]:
    """Nodes whose value is the same at every frame of a call: constants, parameters and pure
    ops of them (node ids are in creation order, so inputs come first)."""
    inv = set()
    for nd in graph.nodes:
        name = nd.op.name
        if name in ("constant", "param") or (
            nd.op.kind == PURE and name != "output" and nd.inputs and all(i in inv for i in nd.inputs)
        ):
            inv.add(nd.id)
    return inv


def lean_adjoint(adj, forward_graph) -> LeanAdjoint:
    bwd = adj.graph
    param_cells = {}  # forward cell id -> backward cell
    invariant, made = invariant_nodes(forward_graph), {}

    def recompute(new, fid):
        """Forward node fid (invariant) rebuilt in the backward graph over its own params."""
        if fid not in made:
            nd = forward_graph.nodes[fid]
            if nd.op.name == "param":
                if nd.op.cell.id not in param_cells:
                    param_cells[nd.op.cell.id] = new.alloc(1)
                made[fid] = new.n(Op.param(param_cells[nd.op.cell.id], nd.op.label))
            else:
                made[fid] = new.n(nd.op, *(recompute(new, i) for i in nd.inputs))
        return made[fid]

    def rewrite(new, nd, ins):
        if nd.op.name != "tape":
            return None
        src = forward_graph.nodes[nd.op.ref_id].op
        if src.name == "input":
            return new.n(Op.input(src.channel))
        if nd.op.ref_id in invariant:
            return recompute(new, nd.op.ref_id)
        return None

    no_outputs = {nd.id for nd in bwd.nodes if nd.op.name != "output"}
    trimmed, _ = copy_graph(bwd, rewrite, keep=no_outputs)
    graph, _ = prune_dead(trimmed)  # cells (and so the gradient cells' ids) are kept as they are
    tape_ids = tuple(sorted(nd.op.ref_id for nd in graph.nodes if nd.op.name == "tape"))
    used = {nd.op.cell.id for nd in graph.nodes if nd.op.name == "param"}
    cells = {bc.id: fc for fc, bc in param_cells.items() if bc.id in used}
    return LeanAdjoint(graph, tape_ids, cells, adj.grad_cells)


@dataclass
class LeanStep:
    """What a backend needs to run one loss's lean training step (train/fast.py on the C
    backend, runtime/cuda_training.py on CUDA)."""

    loss_id: int  # in the expanded forward graph
    forward_kernel: object  # keeps exactly the tapes the backward reads, and the loss
    backward_kernel: object
    size: int  # rows of the backward memory
    tape_ids: tuple[int, ...]
    param_rows: tuple[list[int], list[int]]  # (backward rows, forward rows): parameters copied in per step
    grad_rows: dict  # forward parameter cell id -> backward row of its gradient


def lean_step(prog, grad) -> LeanStep:
    """The lean adjoint of `grad` (a TrainingProgram gradient), planned, with its kernels."""
    lean = lean_adjoint(grad.adjoint, prog.graph)
    bplan = plan(lean.graph, expand=False, reverse=True)
    _debug("lean adjoint", bplan.dump())
    offsets, foffsets = bplan.layout.offsets, prog.plan.layout.offsets
    rows = [(offsets[b], foffsets[f]) for b, f in lean.param_cells.items()]
    return LeanStep(
        grad.loss_id,
        prog.kernel_factory(prog.plan, (*lean.tape_ids, grad.loss_id)),
        prog.kernel_factory(bplan, ()),
        bplan.layout.size,
        lean.tape_ids,
        ([b for b, _ in rows], [f for _, f in rows]),
        {c: offsets[g.id] for c, g in lean.grad_cells.items() if g.id in offsets},
    )
