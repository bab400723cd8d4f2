"""`TrainingContext.train(steps)` on the GPU: the whole loop without a host round trip per step.

What stays on the GPU for all `steps`: the state memory and a snapshot of it after reset (each
step starts from the snapshot: a device-to-device copy), the inputs (uploaded once), parameter
values and the optimizer's state (float64, updated by the optimizer's own `update` rule, which
runs on CuPy arrays through NumPy's array-function protocol), and the loss, gradient and value
history. Nothing is copied to the host until the loop ends, so the CPU queues steps ahead of
the GPU (CuPy launches are asynchronous). Then the history is copied back once, checked (the
first non-finite loss, gradient or value stops training at that step, as `TrainingContext.step`
does, with the parameter's name), and written into the context.
"""

from __future__ import annotations

from ..train.loop import finish, param_table, python_loop

SUPPORTED_OPTIMIZERS = ("SGD", "Adam")


class _DeviceState:
    """Parameter values, bounds and gradient rows of one fused run, as (P, B) device arrays."""

    def __init__(self, cp, prog, ctx, step, table):
        fwd = prog.forward
        self.params = ctx.parameters
        self.values, self.low, self.high = cp.asarray(table.start), cp.asarray(table.low), cp.asarray(table.high)
        self.mem_rows = cp.asarray([fwd.plan.layout.offsets[p.cell.id] for p in self.params], cp.int64)
        rows = [step.grad_rows.get(p.cell.id) for p in self.params]
        self.has_grad = cp.asarray([[r is not None] for r in rows])
        self.grad_rows = cp.asarray([0 if r is None else r for r in rows], cp.int64)


def _optimizer_to(state: dict, convert) -> None:
    for per_param in state.values():
        for key, value in per_param.items():
            per_param[key] = convert(value)


def train_steps(prog, ctx, steps, inputs, bar):
    """Run `steps` training steps of `ctx` on the GPU; returns the last loss like `train`."""
    if type(ctx.optimizer).__name__ not in SUPPORTED_OPTIMIZERS or ctx.loss is None and not prog.graph.outputs():
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

    def __init__(self, cp, prog, ctx, lean, dev, start_mem, chans, frames):
        self.cp, self.prog, self.opt, self.lean, self.dev = cp, prog, ctx.optimizer, lean, dev
        self.start_mem, self.chans, self.frames = start_mem, chans, frames
        B = prog.instances
        self.bmem = cp.zeros((lean.size, B), cp.float32)
        self.loss = cp.zeros(B, cp.float64)
        self.grads = cp.zeros((len(dev.params), B), cp.float64)
        self.capture_error = None  # why the last capture failed (prog.last_train_capture_error)

    def run(self) -> None:
        cp, fwd, dev = self.cp, self.prog.forward, self.dev
        fwd.mem[...] = self.start_mem
        fwd.mem[dev.mem_rows] = dev.values.astype(cp.float32)
        self.loss[...] = self.prog.run_step(self.lean, self.chans, self.frames, self.bmem)
        self.grads[...] = cp.where(dev.has_grad, self.bmem[dev.grad_rows].astype(cp.float64), 0.0)
        held = {(name, key): v for name, st in self.opt.state.items() for key, v in st.items()}
        for k, p in enumerate(dev.params):
            dev.values[k] = self.opt.update(p.name, dev.values[k], self.grads[k])
        cp.clip(dev.values, dev.low, dev.high, out=dev.values)
        for (name, key), old in held.items():  # the optimizer rebinds its state: copy back
            new = self.opt.state[name][key]
            if new is not old:
                old[...] = new
                self.opt.state[name][key] = old

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


EAGER_STEPS = 2  # steps launched one by one before the capture (warm the memory pool and cuFFT plans)


def _run(cp, prog, ctx, lean, dev, start_mem, chans, frames, steps, bar):
    B, P = prog.instances, len(dev.params)
    losses, grads = cp.empty((steps, B), cp.float64), cp.empty((steps, P, B), cp.float64)
    values = cp.empty((steps, P, B), cp.float64)
    step = _Step(cp, prog, ctx, lean, dev, start_mem, chans, frames)
    _optimizer_to(ctx.optimizer.state, cp.asarray)
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
                        _optimizer_to(ctx.optimizer.state, cp.asarray)  # state made by step 0
                        graph = step.capture(stream)
                losses[s], grads[s], values[s] = step.loss, step.grads, dev.values
                bar.update(1)
    finally:
        stream.synchronize()
        _optimizer_to(ctx.optimizer.state, lambda v: v.get() if isinstance(v, cp.ndarray) else v)
    prog.last_train_graphed = graph is not None
    prog.last_train_capture_error = step.capture_error
    return losses.get(), grads.get(), values.get()
