"""CudaTrainingProgram: training steps with everything on the GPU.

`forward_backward` and `TrainingContext.train` (cuda_train.py) run the lean adjoint
(train/lean.py): no input gradients, parameters read as the backward program's own params (one
row copied per step), inputs read as they are, and per-call invariants such as filter
coefficients recomputed once per call instead of taped as whole signals. A step copies back
only the loss per instance and the gradient rows. `vjp` takes the generic (copying) path with
the full adjoint, which also returns input gradients.
"""

from __future__ import annotations

import numpy as np

from ..train.program import TrainingProgram

F32 = np.dtype(np.float32)


class CudaTrainingProgram(TrainingProgram):
    """forward_backward with everything on the GPU: one small copy back per step (the loss
    per instance and the gradient rows). vjp takes the generic (copying) path."""

    cuda_graphs = True  # TrainingContext.train captures one step as a CUDA graph (cuda_train.py)
    last_train_graphed = False  # whether the last train() replayed such a graph
    last_train_capture_error = None  # if not, why the capture failed (None: not attempted)

    def device_rows(self, step):
        """step.param_rows as device index arrays (made once: copying them up per step would
        be a host transfer inside a captured CUDA graph), or None when no parameter is read."""
        rows = self.__dict__.setdefault("_device_rows", {})
        if step.loss_id not in rows:
            cp = self.forward.cp
            brows, frows = step.param_rows
            rows[step.loss_id] = (cp.asarray(brows, cp.int64), cp.asarray(frows, cp.int64)) if brows else None
        return rows[step.loss_id]

    def run_step(self, step, chans, frames, bmem):
        """Forward from the current memory, then backward into `bmem` (zeroed here). Returns
        the loss per instance as a (B,) float64 device array."""
        cp, fwd, B = self.forward.cp, self.forward, self.instances
        values = step.forward_kernel.execute(fwd.mem_view(), frames, chans)
        loss = values[step.loss_id].reshape(frames, B).astype(cp.float64).mean(axis=0)
        bmem.fill(0)
        rows = self.device_rows(step)
        if rows is not None:
            bmem[rows[0]] = fwd.mem[rows[1]]
        tape = {i: values[i] for i in step.tape_ids}
        step.backward_kernel.execute(bmem[:, 0] if B == 1 else bmem, frames, chans, tape)
        return loss

    def forward_backward(self, loss=None, inputs=None, parameters=None):
        fwd, cp, B = self.forward, self.forward.cp, self.instances
        step = self.lean(loss)
        x, frames = self.step_inputs(inputs, "forward_backward"), self.frame_count
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
