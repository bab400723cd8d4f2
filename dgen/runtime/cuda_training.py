"""CudaTrainingProgram: training steps with everything on the GPU.

`forward_backward` and `TrainingContext.train` (cuda_train.py) run the lean adjoint
(train/lean.py): no input gradients, parameters read as the backward program's own params (one
row copied per step), inputs read as they are, and per-call invariants such as filter
coefficients recomputed once per call instead of taped as whole signals. A step copies back
only the loss per instance and the gradient rows. `vjp` takes the generic (copying) path with
the full adjoint, which also returns input gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RunInputError
from ..pipeline import _debug, plan
from ..train.lean import lean_adjoint
from ..train.program import TrainingProgram

F32 = np.dtype(np.float32)


@dataclass
class LeanStep:
    """The kernels and row maps of one loss's lean training step."""

    loss_id: int  # in the expanded forward graph
    forward_kernel: object  # keeps the tapes the backward reads and the loss
    backward_kernel: object
    size: int  # rows of the backward memory
    tape_ids: tuple
    param_rows: tuple  # (backward rows, forward rows) as device index arrays, or None: copied per step
    grad_rows: dict  # forward parameter cell id -> backward row of its gradient


class CudaTrainingProgram(TrainingProgram):
    """forward_backward with everything on the GPU: one small copy back per step (the loss
    per instance and the gradient rows). vjp takes the generic (copying) path."""

    cuda_graphs = True  # TrainingContext.train captures one step as a CUDA graph (cuda_train.py)
    last_train_graphed = False  # whether the last train() replayed such a graph

    def lean(self, loss=None) -> LeanStep:
        """The lean step of `loss` (default: output 0), built once."""
        grad = self.gradient(loss if loss is not None else self.default_loss())
        cache = self.__dict__.setdefault("_lean_steps", {})
        if grad.loss_id not in cache:
            lean = lean_adjoint(grad.adjoint, self.graph)
            bplan = plan(lean.graph, expand=False, reverse=True)
            _debug("lean adjoint", bplan.dump())
            offsets, foffsets = bplan.layout.offsets, self.plan.layout.offsets
            rows = [(offsets[b], foffsets[f]) for b, f in lean.param_cells.items()]
            cp = self.forward.cp
            rows = tuple(cp.asarray(r, cp.int64) for r in zip(*rows)) if rows else None
            cache[grad.loss_id] = LeanStep(
                grad.loss_id,
                self.kernel_factory(self.plan, (*lean.tape_ids, grad.loss_id)),
                self.kernel_factory(bplan, ()),
                bplan.layout.size,
                lean.tape_ids,
                rows,
                {c: offsets[g.id] for c, g in lean.grad_cells.items() if g.id in offsets},
            )
        return cache[grad.loss_id]

    def run_step(self, step: LeanStep, chans, frames, bmem):
        """Forward from the current memory, then backward into `bmem` (zeroed here). Returns
        the loss per instance as a (B,) float64 device array."""
        cp, fwd, B = self.forward.cp, self.forward, self.instances
        values = step.forward_kernel.execute(fwd.mem_view(), frames, chans)
        loss = values[step.loss_id].reshape(frames, B).astype(cp.float64).mean(axis=0)
        bmem.fill(0)
        if step.param_rows is not None:
            brows, frows = step.param_rows
            bmem[brows] = fwd.mem[frows]
        tape = {i: values[i] for i in step.tape_ids}
        step.backward_kernel.execute(bmem[:, 0] if B == 1 else bmem, frames, chans, tape)
        return loss

    def forward_backward(self, loss=None, inputs=None, parameters=None):
        fwd, cp, B = self.forward, self.forward.cp, self.instances
        step = self.lean(loss)
        x, frames = fwd._check_inputs(inputs, self.frame_count)
        if frames != self.frame_count:
            raise RunInputError(f"forward_backward runs frame_count={self.frame_count} frames, inputs have {frames}")
        bmem = cp.zeros((step.size, B), F32)
        with fwd.exclusive("forward_backward()"):
            fwd._sync_parameters()
            loss_dev = self.run_step(step, fwd.channel_arrays(x), frames, bmem)
        params = list(parameters if parameters is not None else self.graph.parameters)
        at = [step.grad_rows[p.cell.id] for p in params if p.cell.id in step.grad_rows]
        host_rows = cp.asnumpy(bmem[cp.asarray(at, dtype=cp.int64)]).astype(np.float64) if at else None
        grads, k = {}, 0
        for p in params:
            if p.cell.id in step.grad_rows:
                grads[p], k = host_rows[k], k + 1
            else:
                grads[p] = np.zeros(B)
        return cp.asnumpy(loss_dev), grads

    def train_steps(self, ctx, steps, inputs, bar):
        """TrainingContext.train's loop on the GPU, one copy to the host at the end (cuda_train.py)."""
        from .cuda_train import train_steps

        return train_steps(self, ctx, steps, inputs, bar)

    def vjp(self, *args, **kwargs):
        with self.forward.on_host():
            return super().vjp(*args, **kwargs)
