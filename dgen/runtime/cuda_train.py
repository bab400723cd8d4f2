"""`TrainingContext.train(steps)` on the GPU: the whole loop without a host round trip per step.

What stays on the GPU for all `steps`: the state memory and a snapshot of it after reset (each
step starts from the snapshot: a device-to-device copy; the snapshot keeps the current
parameter values), the inputs (uploaded once), parameter values and the optimizer's state
(float64; `dgen.Adam` and `dgen.SGD` run as one kernel per step that also reads the gradient
rows, clamps and writes the snapshot's parameter rows: cuda_optim.py; other optimizers take
the per-step loop), and the loss, gradient and value history (recorded by a kernel of the
step: a replayed graph then costs the CPU one launch per step). Nothing is copied to the host
until the loop ends, so the CPU queues steps ahead of the GPU (CuPy launches are
asynchronous). Then the history is copied back once, checked (the first non-finite loss,
gradient or value stops training at that step, as `TrainingContext.step` does, with the
parameter's name), and written into the context.
"""

from __future__ import annotations

import numpy as np

from ..train.loop import finish, param_table, python_loop
from .cuda_optim import RULES, DeviceOptimizer
from .cuda_program import compile_module


class _DeviceState:
    """Parameter values, bounds and gradient rows of one fused run, as (P, B) device arrays."""

    def __init__(self, cp, prog, ctx, step, table):
        fwd = prog.forward
        self.params = ctx.parameters
        self.values, self.low, self.high = cp.asarray(table.start), cp.asarray(table.low), cp.asarray(table.high)
        self.mem_rows = cp.asarray([fwd.plan.layout.offsets[p.cell.id] for p in self.params], cp.int64)
        rows = [step.grad_rows.get(p.cell.id) for p in self.params]
        self.has_grad = cp.asarray([r is not None for r in rows])
        self.grad_rows = cp.asarray([0 if r is None else r for r in rows], cp.int64)


def train_steps(prog, ctx, steps, inputs, bar):
    """Run `steps` training steps of `ctx` on the GPU; returns the last loss like `train`."""
    if type(ctx.optimizer).__name__ not in RULES or ctx.loss is None and not prog.graph.outputs():
        return python_loop(ctx, steps, inputs, bar)
    fwd, cp, frames = prog.forward, prog.forward.cp, prog.frame_count
    lean = prog.lean(ctx.loss)
    x = prog.step_inputs(inputs, "train")
    table = param_table(ctx.parameters, prog.instances)
    with fwd.exclusive("train()"):
        fwd.reset()
        fwd._sync_parameters()
        start_mem = fwd.mem.copy()
        chans = fwd.channel_arrays(x)
        dev = _DeviceState(cp, prog, ctx, lean, table)
        history = _run(cp, prog, ctx, lean, dev, start_mem, chans, frames, steps, bar)
    return finish(ctx, dev.params, table.start, *history)


class _Step:
    """One training step on the GPU, written so that a CUDA graph of it can be replayed: every
    buffer a step reads is updated in place (parameter values, optimizer state), never rebound."""

    def __init__(self, cp, prog, ctx, lean, dev, start_mem, chans, frames, steps):
        self.cp, self.prog, self.lean, self.dev = cp, prog, lean, dev
        self.start_mem, self.chans, self.frames = start_mem, chans, frames
        B, P = prog.instances, len(dev.params)
        self.bmem = cp.zeros((lean.size, B), cp.float32)
        self.loss = cp.zeros(B, cp.float64)
        self.grads = cp.zeros((P, B), cp.float64)
        self.update = DeviceOptimizer(cp, ctx.optimizer, dev, B)
        start_mem[dev.mem_rows] = dev.values.astype(cp.float32)  # later steps: the update writes them
        self.capture_error = None  # why the last capture failed (prog.last_train_capture_error)
        # the loss, gradient and value history, filled row by row on the GPU (a device step
        # counter picks the row, so a replayed graph of one step records every step)
        self.history = (cp.empty((steps, B), cp.float64), cp.empty((steps, P, B), cp.float64))
        self.history += (cp.empty((steps, P, B), cp.float64),)
        self.row = cp.zeros(1, cp.int32)
        self.record = compile_module(RECORD).get_function("dgen_record_step")

    def run(self) -> None:
        self.prog.forward.mem[...] = self.start_mem
        self.prog.run_step(self.lean, self.chans, self.frames, self.bmem, fresh=True, out=self.loss)
        self.update(self.bmem, self.grads, self.start_mem)
        P, B = self.grads.shape
        args = (self.row, self.loss, self.grads, self.dev.values, *self.history, np.int32(P), np.int32(B))
        self.record((1,), (1024,), args)

    def capture(self, stream):
        """A CUDA graph of one step, or None when the step cannot be captured (a host sync, an
        allocation the warmed-up pool cannot serve): then steps keep running one by one."""
        try:
            stream.begin_capture()
            try:
                self.run()
            finally:
                graph = stream.end_capture()
            return graph
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to plain launches
            self.capture_error = f"{type(exc).__name__}: {exc}"
            return None


RECORD = r"""
extern "C" __global__ void dgen_record_step(int *row, const double *loss, const double *grads,
                                            const double *values, double *losses, double *grad_hist,
                                            double *value_hist, const int P, const int B) {
    /* one block: row *row of the histories, then (all threads done reading it) the next row */
    const long long r = *row, PB = (long long)P * B;
    for (long long t = threadIdx.x; t < B; t += blockDim.x) losses[r * B + t] = loss[t];
    for (long long t = threadIdx.x; t < PB; t += blockDim.x) {
        grad_hist[r * PB + t] = grads[t];
        value_hist[r * PB + t] = values[t];
    }
    __syncthreads();
    if (threadIdx.x == 0) *row = (int)r + 1;
}
"""

EAGER_STEPS = 2  # steps launched one by one before the capture (warm the memory pool and cuFFT plans)


def _run(cp, prog, ctx, lean, dev, start_mem, chans, frames, steps, bar):
    step = _Step(cp, prog, ctx, lean, dev, start_mem, chans, frames, steps)
    stream, pool, graph = cp.cuda.Stream(non_blocking=True), cp.cuda.MemoryPool(), None
    cp.cuda.Device().synchronize()  # what the null stream wrote, before the side stream reads it
    try:
        # a private pool: the blocks a captured graph uses are never handed to anyone else
        with cp.cuda.using_allocator(pool.malloc), stream:
            for s in range(steps):
                if graph is not None:
                    graph.launch(stream)
                else:
                    step.run()
                    if s == EAGER_STEPS - 1 and steps > EAGER_STEPS and prog.cuda_graphs:
                        graph = step.capture(stream)
                bar.update(1)
    finally:
        stream.synchronize()
        step.update.write_back()
    prog.last_train_graphed = graph is not None
    prog.last_train_capture_error = step.capture_error
    return tuple(h.get() for h in step.history)
