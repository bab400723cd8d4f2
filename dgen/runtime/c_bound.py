"""A CKernel bound to one memory block, one frame count and buffers allocated once.

`CKernel.execute` is general: it accepts any memory and signal layout, pads and copies what
is not already in the kernel's layout, allocates every value it returns and builds the
pointer arrays of each stage per call. A training step runs the same two kernels thousands
of times on the same memory, so `BoundKernel` does all of that once: values and results live
in buffers owned by the bound kernel (each call overwrites them), the tape is read in place
from buffers fixed at bind time, and each call only sets the input channels' addresses
and calls the stage functions (buffer ops, the spectral losses, still run in NumPy between
stages). At 4096 frames and 64 instances the per-call allocation, padding and transposes
took several times longer than the generated code itself.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .host_sdft import run_buffer_op
from .sources import missing_tape

F32 = np.dtype(np.float32)


class BoundKernel:
    """kernel.bind(pmem, frames, n_inputs, tape): pmem is the padded memory, (M, Bp) with
    instances in lanes or (M,), used in place; tape: ref id -> padded signal read in place.
    Call with x (B, C, frames) float32 C-contiguous; returns {node: padded signal}."""

    def __init__(self, kernel, pmem, frames: int, B: int, n_inputs: int, tape=None):
        self.kernel, self.pmem, self.frames, self.B = kernel, pmem, frames, B
        self.lanes = pmem.ndim == 2
        self.built = kernel.build(self.lanes)
        self.Bp = pmem.shape[1] if self.lanes else 1
        self.shape = (frames, self.Bp) if self.lanes else (frames,)
        self.tape = dict(tape or {})
        self.n_inputs = n_inputs
        self.x_block = None  # (Bp, C, frames) when B is not a multiple of the SIMD width
        chans = [s.key for st in self._stages() for s in st.slots if s.kind == "output"]
        self.outputs = np.zeros((self.Bp, max(chans, default=-1) + 1, frames), F32)
        self.values: dict = {}
        self.mem_address = pmem.ctypes.data
        self.calls = [self._bind_step(step) for step in self.built.csource.steps]

    def _stages(self):
        return [step.stage for step in self.built.csource.steps if step.kind == "stage"]

    def _bind_step(self, step):
        if step.kind == "buffer":
            for n in step.block.nodes:
                self.values[n] = np.zeros(self.shape, F32)
            return ("buffer", step.block)
        st = step.stage
        ptrs = (ctypes.c_void_p * max(1, len(st.slots)))()
        inputs = []  # (slot index, channel): set per call
        for k, s in enumerate(st.slots):
            if s.kind == "input":
                inputs.append((k, s.key))
                continue
            if s.kind == "out":
                self.values[s.node] = arr = np.zeros(self.shape, F32)
            elif s.kind == "output":
                arr = self.outputs[0, s.key]
                self.values[s.node] = self.outputs[:, s.key].T if self.lanes else arr
            elif s.kind == "tape":
                arr = self._tape(s.key)
            else:
                arr = self.values[s.node]
            ptrs[k] = arr.ctypes.data
        groups = self.Bp // self.built.width if self.lanes else 1
        fn = self.built.functions[st.name]
        return ("stage", fn, ptrs, inputs, groups)

    def _tape(self, key):
        if key not in self.tape:
            raise missing_tape(key)
        arr = self.tape[key]
        if arr.dtype != F32 or arr.shape != self.shape or not arr.flags.c_contiguous:
            raise ValueError(f"tape {key} must be a contiguous float32 {self.shape} array to be bound")
        return arr

    def prepare(self, x):
        """(x padded to Bp instances if needed, address of its first float, row stride in floats).
        Both kernels of a training step share one prepared x."""
        if x.shape[1] < self.n_inputs:
            raise ValueError(f"the graph reads {self.n_inputs} input channel(s); {x.shape[1]} given")
        C, N = x.shape[1], x.shape[2]
        if self.lanes and x.shape[0] != self.Bp:
            if self.x_block is None or self.x_block.shape != (self.Bp, C, N):
                self.x_block = np.zeros((self.Bp, C, N), F32)
            self.x_block[: x.shape[0]] = x
            x = self.x_block
        return x, x.ctypes.data, C * N

    def __call__(self, x, prepared=None):
        x, base, istride = prepared or self.prepare(x)
        N, mem, ostride = self.frames, self.mem_address, self.outputs.shape[1] * self.frames
        for call in self.calls:
            if call[0] == "buffer":
                self._buffer_block(call[1], x)
                continue
            _, fn, ptrs, inputs, groups = call
            for k, ch in inputs:
                ptrs[k] = base + 4 * ch * N
            fn(mem, ptrs, N, groups, istride, ostride)
        return self.values

    def _buffer_block(self, block, x):
        k, lanes, B = self.kernel, self.lanes, self.B
        ins = [x[:, c] if lanes else x[0, c] for c in range(x.shape[1])]  # as CKernel.run takes them
        mview = self.pmem[:, :B] if lanes else self.pmem
        for n in block.nodes:
            nd = k.graph.nodes[n]
            args = [k._whole(j, self.pmem, self.values, ins, self.tape, self.shape, B, lanes) for j in nd.inputs]
            base = k.layout.offsets[nd.op.cell.id] if nd.op.cell is not None else 0
            with np.errstate(all="ignore"):
                out = run_buffer_op(nd.op, mview, base, *args)
            if lanes:
                self.values[n][:, :B] = out
            else:
                self.values[n][:] = out

    def kept(self, i, x):
        """Node i as a padded signal: a bound buffer, or made now (constants, params, inputs)."""
        if i in self.values:
            return self.values[i]
        ins = [x[:, c] if self.lanes else x[0, c] for c in range(x.shape[1])]
        return self.kernel._whole(
            i, self.pmem, self.values, ins, self.tape, self.shape, self.B, self.lanes, padded=True
        )
