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

from .loop import finish, param_table, python_loop

F32 = np.dtype(np.float32)


class BoundStep:
    def __init__(self, prog, lean):
        """lean: the loss's lean.LeanStep, whose two kernels this binds."""
        fwd = prog.forward
        self.mem_source, self.B, self.loss_id = fwd.mem, prog.instances, lean.loss_id
        self.forward_kernel, self.backward_kernel = lean.forward_kernel, lean.backward_kernel
        frames, n_in = prog.frame_count, fwd.n_inputs
        self.fwd = self.forward_kernel.bind(fwd.mem_view(), frames, n_in)
        self.tape, self.copies = self._tape(lean.tape_ids)
        self.bmem = self._backward_memory(lean.size, fwd.lanes if hasattr(fwd, "lanes") else self.B > 1)
        self.bwd = self.backward_kernel.bind(self.bmem, frames, n_in, self.tape)
        self.param_rows = list(zip(*lean.param_rows))
        self.scratch = np.empty((frames // 2, *self.fwd.shape[1:]), F32)
        self.grad_rows = lean.grad_rows

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

    def __call__(self, x, parameters, prepared=None):
        """x: (B, C, frames) float32, checked; `prepared`: what `self.fwd.prepare(x)` returned
        (a loop over one x prepares it once). Returns (loss (B,), {parameter: grad (B,)})."""
        prepared = prepared or self.fwd.prepare(x)
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


def train_bound(prog, ctx, steps, inputs, bar):
    """`TrainingContext.train` on bound kernels: per step only the state reset (one copy), the
    parameter rows, the two kernels, the optimizer's update and four array writes; the history
    rows, checks and parameter objects are written once at the end (loop.finish), as the
    per-step loop would have written them. Backends without bound kernels run that loop."""
    fast = prog._bound_step(prog.gradient(ctx.loss if ctx.loss is not None else prog.default_loss()))
    if fast is None:
        return python_loop(ctx, steps, inputs, bar)
    fwd, params = prog.forward, ctx.parameters
    x = prog.step_inputs(inputs, "train")
    table = param_table(params, prog.instances)
    fwd.reset()
    fwd._sync_parameters()
    history = _run_bound(fast, fwd, x, ctx, table, steps, bar)
    return finish(ctx, params, table.start, *history)


def _run_bound(fast, fwd, x, ctx, table, steps, bar):
    params, opt, limit = ctx.parameters, ctx.optimizer, ctx._limit()
    P, B = table.start.shape
    # one record per step: row 0 the loss, rows 1..P the gradients, P+1..2P the new values, so
    # that one reduction tells a good step (every number finite and within the program's range)
    record = np.empty((steps, 1 + 2 * P, B))
    low, high = table.low, table.high
    rows, mem, current, done = [fwd.plan.layout.offsets[p.cell.id] for p in params], fwd.mem, table.start.copy(), steps
    with fwd.exclusive("train()"):
        start_mem, prepared = mem.copy(), fast.fwd.prepare(x)  # after reset, every parameter's row
        for s in range(steps):
            np.copyto(mem, start_mem)
            mem[rows] = current
            rec = record[s]
            rec[0], step_grads = fast(x, params, prepared)
            for k, p in enumerate(params):
                rec[1 + k] = step_grads[p]
                current[k] = opt.update(p.name, current[k], rec[1 + k])
            if table.bounded:
                np.minimum(np.maximum(current, low, out=current), high, out=current)
            rec[1 + P :] = current
            bar.update(1)
            if not np.abs(rec).max() <= limit:  # also false for NaN
                done = s + 1
                break
    record = record[:done]
    return record[:, 0], record[:, 1 : 1 + P], record[:, 1 + P :]
