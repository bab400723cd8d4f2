"""Programs compiled with backwards=True: a forward program plus adjoint programs.

The forward pass runs the expanded graph and keeps (tapes) the values the adjoint graph
reads; the adjoint graph then runs frames from last to first. The tape holds whole signals
for one call (frames x instances floats per taped node): simple and exact; 4096 frames of
the seed graph tape about 20 signals. Any backend works that can build a kernel from a
plan: `kernel_factory(plan, keep) -> kernel` with `execute(mem, frames, inputs, tape)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import errors
from ..ops import Op
from ..pipeline import _debug, plan
from ..transform.autodiff import Adjoint, differentiate


@dataclass
class _Gradient:
    loss_id: int  # in the expanded forward graph
    adjoint: Adjoint
    forward_kernel: object
    backward_kernel: object
    backward_plan: object


class TrainingProgram:
    """Runs like the forward program (`run`, `reset`, `source`) and adds `forward_backward`."""

    def __init__(self, forward, kernel_factory, user_graph=None):
        self.forward = forward
        self.kernel_factory = kernel_factory
        self.user_graph = user_graph  # the graph compiled (self.graph is its expansion)
        self._gradients: dict[int, _Gradient] = {}
        self._lean: dict = {}  # loss id -> lean.LeanStep (the kernels a training step runs)
        self._bound: dict = {}  # loss id -> fast.BoundStep, for backends whose kernels bind

    # the forward program's surface
    graph = property(lambda self: self.forward.graph)
    plan = property(lambda self: self.forward.plan)
    schedule = property(lambda self: self.forward.schedule)
    instances = property(lambda self: self.forward.instances)
    frame_count = property(lambda self: self.forward.frame_count)
    backend = property(lambda self: self.forward.backend)

    @property
    def source(self) -> str:
        parts = [self.forward.source]
        for gr in self._gradients.values():  # the kernels a training step runs, once it has run
            lean = self._lean.get(gr.loss_id)
            kernels = (lean.forward_kernel, lean.backward_kernel) if lean else (gr.backward_kernel,)
            parts += [getattr(k, "source", "") for k in kernels]
        return "\n".join(p for p in parts if p)

    def run(self, inputs=None, frames=None, out=None):
        return self.forward.run(inputs, frames, out=out)

    def reset(self):
        self.forward.reset()

    def __repr__(self):
        return repr(self.forward).replace("program", "training program", 1)

    # ------------------------------------------------------------------ gradients
    def default_loss(self):
        outs = self.graph.outputs()
        if 0 not in outs:
            raise errors.GraphError("no loss given and the graph has no output(0) to train on")
        return self.graph.nodes[outs[0].inputs[0]]

    def _adjoint(self, key, seeds, keep) -> _Gradient:
        if key not in self._gradients:
            adj = differentiate(self.plan.graph, seeds, self.plan.schedule.order())
            bplan = plan(adj.graph, expand=False, reverse=True)
            _debug("adjoint", bplan.dump())
            self._gradients[key] = _Gradient(
                key[1],
                adj,
                self.kernel_factory(self.plan, (*adj.tape_ids, *keep)),
                self.kernel_factory(bplan, ()),
                bplan,
            )
        return self._gradients[key]

    def gradient(self, loss) -> _Gradient:
        """The adjoint (built once per loss node) of the objective mean_n loss[n]."""
        # a node of the user's graph maps into the expanded one; default_loss() is already there
        if loss.graph is not self.graph and self.user_graph is not None and loss.graph is not self.user_graph:
            raise errors.ForeignNodeError(
                f"the loss, node {loss.id} ({loss.op.name}), belongs to another graph than the program's"
            )
        if loss.graph is not self.graph and loss.id not in self.plan.node_map:
            raise errors.GraphError(
                f"the loss, node {loss.id} ({loss.op.name}), was added to the graph after it was "
                "compiled; build the loss first, then compile"
            )
        fid = loss.id if loss.graph is self.graph else self.plan.node_map[loss.id]
        scale = 1.0 / self.frame_count
        return self._adjoint(("loss", fid), {fid: lambda g: g.constant(scale)}, (fid,))

    def output_gradient(self) -> _Gradient:
        """The adjoint fed by an upstream gradient per output channel (its input channels)."""
        # self.graph is the forward plan's (expanded) graph: its ids need no node_map
        outs = {ch: nd.id for ch, nd in self.graph.outputs().items()}
        seeds = {fid: (lambda ch: lambda g: g.n(Op.input(ch)))(ch) for ch, fid in outs.items()}
        return self._adjoint(("outputs", -1), seeds, tuple(outs.values()))

    def _backward(self, grad, frames, tape, upstream=()):
        bmem = np.zeros((grad.backward_plan.layout.size, self.instances), self.forward.dtype)
        values = grad.backward_kernel.execute(bmem[:, 0] if self.instances == 1 else bmem, frames, list(upstream), tape)
        return bmem, values

    def _param_grads(self, grad, bmem, parameters):
        grads = {}
        for p in parameters if parameters is not None else self.graph.parameters:
            cell = grad.adjoint.grad_cells.get(p.cell.id)
            at = grad.backward_plan.layout.offsets[cell.id] if cell is not None else None
            grads[p] = np.zeros(self.instances) if at is None else bmem[at].astype(np.float64)
        return grads

    def vjp(self, inputs=None, upstream=None, frames=None, parameters=None):
        """Forward from the current state, then pull `upstream` (d objective / d outputs, shaped
        like run()'s result) back. Returns (outputs, d/d inputs shaped like inputs,
        {parameter: gradient per instance (B,)}). Any frame count works."""
        fwd, grad = self.forward, self.output_gradient()
        x, frames = fwd._check_inputs(inputs, frames)
        with fwd.exclusive("vjp()"):
            fwd._sync_parameters()
            values = grad.forward_kernel.execute(fwd.mem_view(), frames, fwd.channel_arrays(x))
        B, O = self.instances, fwd.n_outputs
        outputs = np.zeros((B, O, frames), fwd.dtype)
        for ch, nd in self.graph.outputs().items():
            v = values[nd.id]
            outputs[:, ch] = v if B == 1 else v.T
        up = np.zeros((B, O, frames)) if upstream is None else np.asarray(upstream, fwd.dtype).reshape(B, O, frames)
        up = np.ascontiguousarray(up, fwd.dtype)
        tape = {i: values[i] for i in grad.adjoint.tape_ids}
        bmem, bvalues = self._backward(grad, frames, tape, fwd.channel_arrays(up))
        dx = np.zeros((B, fwd.n_inputs, frames), np.float64)
        for ch, nd in grad.backward_plan.graph.outputs().items():
            dx[:, ch] = bvalues[nd.id] if B == 1 else bvalues[nd.id].T
        squeeze = (lambda a: a[0]) if B == 1 else (lambda a: a)
        return squeeze(outputs), squeeze(dx), self._param_grads(grad, bmem, parameters)

    def lean(self, loss=None):
        """The lean training step (lean.LeanStep) of `loss` (default: output 0), built once."""
        return self._lean_of(self.gradient(loss if loss is not None else self.default_loss()))

    def _lean_of(self, grad):
        if grad.loss_id not in self._lean:
            from .lean import lean_step

            self._lean[grad.loss_id] = lean_step(self, grad)
        return self._lean[grad.loss_id]

    def step_inputs(self, inputs, what: str):
        """Checked inputs (B, C, frame_count) of one training step; `what` names the call."""
        x, frames = self.forward._check_inputs(inputs, self.frame_count)
        if frames != self.frame_count:
            raise errors.RunInputError(f"{what} runs frame_count={self.frame_count} frames, inputs have {frames}")
        return x

    def _bound_step(self, grad):
        """The BoundStep (fast.py) of this loss when the backend's kernels can be bound, else None."""
        if not hasattr(grad.forward_kernel, "bind"):
            return None
        step = self._bound.get(grad.loss_id)
        if step is None or step.mem_source is not self.forward.mem:
            from .fast import BoundStep

            step = self._bound[grad.loss_id] = BoundStep(self, self._lean_of(grad))
        return step

    def train_steps(self, ctx, steps, inputs, bar):
        """TrainingContext.train's loop: on bound kernels (the C backend) without Python per
        step beyond the kernels and the optimizer (fast.py), else the per-step loop."""
        from .fast import train_bound

        return train_bound(self, ctx, steps, inputs, bar)

    def forward_backward(self, loss=None, inputs=None, parameters=None):
        """One pass over frame_count frames from the current state.

        Returns (loss per instance (B,), {parameter: gradient per instance (B,)}).
        """
        fwd = self.forward
        grad = self.gradient(loss if loss is not None else self.default_loss())
        x, frames = self.step_inputs(inputs, "forward_backward"), self.frame_count
        with fwd.exclusive("forward_backward()"):
            fwd._sync_parameters()
            fast = self._bound_step(grad)
            if fast is not None:
                params = parameters if parameters is not None else self.graph.parameters
                return fast(x, params)
            values = grad.forward_kernel.execute(fwd.mem_view(), frames, fwd.channel_arrays(x))
        loss_values = np.asarray(values[grad.loss_id], np.float64).reshape(frames, -1).mean(axis=0)
        bmem, _ = self._backward(grad, frames, {i: values[i] for i in grad.adjoint.tape_ids})
        return loss_values, self._param_grads(grad, bmem, parameters)


def reference_training_program(graph, frame_count, instances, dtype=np.float64, **options):
    from ..interp.program import ReferenceProgram
    from ..interp.reference import ReferenceKernel

    forward = ReferenceProgram(plan(graph, expand=True), frame_count, instances, dtype)

    def factory(p, keep):
        return ReferenceKernel(p.graph, p.schedule, p.layout, dtype, p.reverse, keep)

    return TrainingProgram(forward, factory, graph)


def training_program(graph, frame_count, instances, kernel_factory, forward):
    """For backends: wrap their forward program and kernel factory."""
    return TrainingProgram(forward, kernel_factory, graph)
