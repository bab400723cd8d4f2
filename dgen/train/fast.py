"""forward_backward on kernels that can be bound (the C backend's `CKernel.bind`).

One `BoundStep` per loss: the lean adjoint (lean.py), a forward kernel that keeps exactly
the values that adjoint reads, both kernels bound once to the program's memory, a backward
memory and every signal buffer (c_bound.py). A step is then: set the parameter rows, run the
forward stages, mean the loss, run the backward stages, read the gradient rows. Nothing of
frame length is allocated, copied or transposed per step unless the graph needs it (a
taped value that is not one of the forward kernel's own buffers is copied into one).
"""

from __future__ import annotations

import numpy as np

from ..pipeline import _debug, plan
from .lean import lean_adjoint

F32 = np.dtype(np.float32)


class BoundStep:
    def __init__(self, prog, grad):
        fwd = prog.forward
        self.mem_source, self.B, self.loss_id = fwd.mem, prog.instances, grad.loss_id
        lean = lean_adjoint(grad.adjoint, prog.graph)
        bplan = plan(lean.graph, expand=False, reverse=True)
        _debug("lean adjoint", bplan.dump())
        self.forward_kernel = prog.kernel_factory(prog.plan, (*lean.tape_ids, grad.loss_id))
        self.backward_kernel = prog.kernel_factory(bplan, ())
        frames, n_in = prog.frame_count, fwd.n_inputs
        self.fwd = self.forward_kernel.bind(fwd.mem_view(), frames, n_in)
        self.tape, self.copies = self._tape(lean.tape_ids)
        self.bmem = self._backward_memory(bplan.layout.size, fwd.lanes if hasattr(fwd, "lanes") else self.B > 1)
        self.bwd = self.backward_kernel.bind(self.bmem, frames, n_in, self.tape)
        offsets, foffsets = bplan.layout.offsets, prog.plan.layout.offsets
        self.param_rows = [(offsets[b], foffsets[f]) for b, f in lean.param_cells.items()]
        self.scratch = np.empty((frames // 2, *self.fwd.shape[1:]), F32)
        self.grad_rows = {c: offsets[g.id] for c, g in lean.grad_cells.items() if g.id in offsets}

    def _tape(self, ids):
        """ref id -> buffer the backward kernel reads; [(buffer, forward id)] to copy per step."""
        tape, copies, shape = {}, [], self.fwd.shape
        for i in ids:
            v = self.fwd.values.get(i)
            if v is not None and v.dtype == F32 and v.shape == shape and v.flags.c_contiguous:
                tape[i] = v
            else:
                tape[i] = np.zeros(shape, F32)
                copies.append((tape[i], i))
        return tape, copies

    def _backward_memory(self, size, lanes):
        if not lanes:
            return np.zeros(size, F32)
        Bp = self.backward_kernel.padded_instances(self.B)
        return np.zeros((size, Bp), F32)[:, : self.B]

    def __call__(self, x, parameters):
        """x: (B, C, frames) float32, checked. Returns (loss (B,), {parameter: grad (B,)})."""
        prepared = self.fwd.prepare(x)
        x = prepared[0]
        self.fwd(x, prepared)
        for buf, i in self.copies:
            np.copyto(buf, self.fwd.kept(i, x))
        loss_values = _mean_frames(self.fwd.kept(self.loss_id, x), self.B, self.scratch)
        bpad, fpad = self.bwd.pmem, self.fwd.pmem
        bpad.fill(0.0)
        for b, f in self.param_rows:
            bpad[b] = fpad[f]
        self.bwd(x, prepared)
        return loss_values, self._grads(parameters)

    def _grads(self, parameters):
        grads = {}
        for p in parameters:
            at = self.grad_rows.get(p.cell.id)
            if at is None:
                grads[p] = np.zeros(self.B)
            else:
                row = self.bmem[at]
                grads[p] = np.array([row], np.float64) if row.ndim == 0 else row.astype(np.float64)
        return grads


def _mean_frames(loss, B, scratch):
    """Mean over frames per instance, float64 result. One instance: float64 pairwise sum.
    Instances in lanes ((frames, Bp), where NumPy's float64 sum over axis 0 converts
    element by element, 2x slower than the kernels): float32 pairwise halving down to 16
    rows, then float64; the error bound is log2(frames) float32 ulps of the sum of |loss|
    (1e-6 at 4096 frames; the C-vs-reference tests allow 1e-5)."""
    frames = loss.shape[0]
    if loss.ndim == 1:
        return np.array([np.add.reduce(loss, dtype=np.float64) / frames])
    total = np.zeros(loss.shape[1])
    s = loss
    while s.shape[0] > 16:
        h = s.shape[0] // 2
        if s.shape[0] % 2:
            total += s[-1]
        s = np.add(s[:h], s[h : 2 * h], out=scratch[:h])
    total += s.sum(axis=0, dtype=np.float64)
    return total[:B] / frames
