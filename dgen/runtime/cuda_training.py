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

from ..train.program import TrainingProgram
from . import cuda_sdft
from .cuda_buffer import carry_history
from .cuda_program import compile_module

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

    def run_step(self, step, chans, frames, bmem, fresh=False, out=None):
        """Forward from the current memory, then backward into `bmem` (zeroed here). Returns
        the loss per instance as a (B,) float64 device array (written into `out` if given).
        fresh: the memory is the reset state (TrainingContext.train starts every step there),
        so a hop-1 spectral loss's window history is zero and its forward value can come out
        of its gradient kernel (fused_loss)."""
        cp, fwd, B = self.forward.cp, self.forward, self.instances
        fused = self.fused_loss(step) if fresh else None
        if fused is None:
            values = step.forward_kernel.execute(fwd.mem_view(), frames, chans)
            self._lean_backward(step, chans, frames, bmem, values)
        else:
            stand_in = {fused.forward_id: self._loss_stand_in(step, chans, frames, bmem, fused)}
            values = step.forward_kernel.execute(fwd.mem_view(), frames, chans, override=stand_in)
        return frame_mean(cp, values[step.loss_id].reshape(frames, B), out)

    def fused_loss(self, step):
        """fused_spectral_loss(step), found once per loss."""
        found = self.__dict__.setdefault("_fused_losses", {})
        if step.loss_id not in found:
            found[step.loss_id] = fused_spectral_loss(step)
        return found[step.loss_id]

    def _lean_backward(self, step, chans, frames, bmem, values, override=None):
        fwd, B = self.forward, self.instances
        rows = self.device_rows(step)
        if rows is None:
            bmem.fill(0)
        else:  # zeros, and the parameters' rows from the forward memory: one kernel
            backward_start(bmem, fwd.mem.reshape(-1, B), *rows)
        tape = {i: values[i] for i in step.tape_ids}
        step.backward_kernel.execute(bmem[:, 0] if B == 1 else bmem, frames, chans, tape, override)

    def _loss_stand_in(self, step, chans, frames, bmem, fused):
        """The forward spectral loss op's stand-in: the whole backward pass, whose gradient
        kernel also returns the loss of each frame; then the loss's window history as the op
        would leave it. The forward steps after it (the loss's own sum) run after the backward."""
        cp, found = self.forward.cp, {}

        def gradient_and_loss(values, sub, adj, a, b):
            grad, found["loss"] = cuda_sdft.grad_and_loss(cp, fused.window, a, b, adj)
            return grad

        def loss(values, sub, a, b):
            self._lean_backward(step, chans, frames, bmem, values, {fused.backward_id: gradient_and_loss})
            carry_history(cp, sub, fused.window, a, b)
            return found["loss"]

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


# The loss per instance: the float64 mean over frames of a (frames, B) float32 signal. CuPy's
# mean along axis 0 took 70-100 us at (4096, 1024) on an H200 (a fifth of a biquad step).
FRAME_MEAN = r"""
extern "C" __global__ void dgen_frame_mean(const float *__restrict__ x, double *__restrict__ out,
                                           const int frames, const int B) {
    /* a block: 32 instances x 32 frame lanes; each lane sums every 32nd frame, then lane 0
       adds the lanes' sums in order (the same result on every run) */
    __shared__ double part[32][33];
    const int b = blockIdx.x * 32 + threadIdx.x;
    double s = 0.0;
    if (b < B) {
        #pragma unroll 8
        for (int i = threadIdx.y; i < frames; i += 32) s += (double)x[(long long)i * B + b];
    }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && b < B) {
        double total = 0.0;
        for (int y = 0; y < 32; y++) total += part[y][threadIdx.x];
        out[b] = total / frames;
    }
}
"""


BACKWARD_START = r"""
extern "C" __global__ void dgen_backward_start(float *bmem, const float *mem, const long long *brows,
                                               const long long *frows, const int nrows, const long long n,
                                               const int B) {
    /* the backward memory at a step's start: zeros, and each parameter's row from the forward's */
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    const long long row = t / B, b = t % B;
    float v = 0.0f;
    for (int k = 0; k < nrows; k++)
        if (brows[k] == row) v = mem[frows[k] * B + b];
    bmem[t] = v;
}
"""


def backward_start(bmem, mem, brows, frows):
    """bmem := 0, then bmem[brows] = mem[frows] (both (rows, B)), as one kernel."""
    kernel = compile_module(BACKWARD_START).get_function("dgen_backward_start")
    n, B = bmem.size, bmem.shape[-1] if bmem.ndim > 1 else 1
    args = (bmem, mem, brows, frows, np.int32(len(brows)), np.int64(n), np.int32(B))
    kernel((-(-n // 256),), (256,), args)


def frame_mean(cp, signal, out=None):
    """(B,) float64 means over the frames of a (frames, B) float32 device signal (into out)."""
    frames, B = signal.shape
    out = cp.empty(B, cp.float64) if out is None else out
    kernel = compile_module(FRAME_MEAN).get_function("dgen_frame_mean")  # compiled once per process
    kernel((-(-B // 32),), (32, 32), (cp.ascontiguousarray(signal), out, np.int32(frames), np.int32(B)))
    return out


@dataclass(frozen=True)
class FusedLoss:
    forward_id: int  # the forward spectral_loss node
    backward_id: int  # the backward spectral_loss_grad node of the same signals
    window: int


def fused_spectral_loss(step):
    """A hop-1 spectral loss whose forward value a training step can take from its gradient
    kernel, or None. Legal when every tape the backward reads is written before the loss's
    buffer step (the backward then runs in its place) and the backward has the loss's gradient
    by its first signal: a spectral_loss_grad node over tapes of the same two signals."""
    fk, bk = step.forward_kernel, step.backward_kernel
    written = set()
    for st in fk.csource.steps:
        if st.kind == "buffer":
            for n in st.block.nodes:
                op = fk.graph.nodes[n].op
                if op.name == "spectral_loss" and cuda_sdft.usable(op.window, op.hop) and set(step.tape_ids) <= written:
                    match = _gradient_node(bk.graph, fk.graph.nodes[n].inputs, op.window)
                    if match is not None:
                        return FusedLoss(n, match, op.window)
            written.update(st.block.nodes)
        else:
            written.update(s.node for s in st.stage.slots if st.stage.written(s))
    return None


def _gradient_node(graph, signals, window):
    """The node of `graph` computing spectral_loss_grad(adj, tape(a), tape(b)), (a, b) = signals."""
    found = [
        nd.id
        for nd in graph.nodes
        if nd.op.name == "spectral_loss_grad"
        and nd.op.window == window
        and nd.op.hop == 1
        and all(graph.nodes[i].op.name == "tape" for i in nd.inputs[1:])
        and tuple(graph.nodes[i].op.ref_id for i in nd.inputs[1:]) == tuple(signals)
    ]
    return found[0] if len(found) == 1 else None
