"""What `dgen.compile` returns: a runnable program with its own state memory.

Backends subclass `Program` and implement `_execute`. This class owns what they share:
checking `run()` arguments, the memory block (one row of floats per cell slot, one column
per instance), parameter values, and output assembly.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from .errors import RunInputError


class Program:
    backend = "?"
    dtype = np.float32

    def __init__(self, plan, frame_count: int, instances: int = 1):
        if not (isinstance(frame_count, Integral) and frame_count > 0):
            raise RunInputError(f"frame_count must be a positive int, got {frame_count!r}")
        if not (isinstance(instances, Integral) and instances > 0):
            raise RunInputError(f"instances must be a positive int, got {instances!r}")
        self.plan, self.graph = plan, plan.graph
        self.frame_count, self.instances = int(frame_count), int(instances)
        self.n_inputs = self.graph.input_channels()
        outs = self.graph.outputs()
        self.n_outputs = max(outs) + 1 if outs else 0
        self.mem = np.zeros((plan.layout.size, self.instances), self.dtype)
        self.reset()

    @property
    def schedule(self):
        return self.plan.schedule

    @property
    def source(self) -> str:
        return getattr(self, "_source", "")

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """State back to zero (cells with an initial value back to it); parameters kept."""
        self.mem[:] = 0
        for at, size, init in self.plan.layout.inits:
            self.mem[at : at + size] = init

    def _sync_parameters(self) -> None:
        for p in self.graph.parameters:
            at = self.plan.layout.offsets[p.cell.id]
            self.mem[at] = p.instance_values(self.instances)

    def mem_view(self):
        """(M,) for one instance (the scalar fast path), (M, B) for more; shares self.mem."""
        return self.mem[:, 0] if self.instances == 1 else self.mem

    def channel_arrays(self, x):
        """(B, C, N) checked inputs -> per channel arrays (N,) or (N, B), as kernels take them."""
        return [x[0, c] if self.instances == 1 else np.ascontiguousarray(x[:, c].T) for c in range(x.shape[1])]

    # ------------------------------------------------------------------ running
    def run(self, inputs=None, frames=None) -> np.ndarray:
        """Render `frames` frames (default frame_count); state carries over between calls.

        inputs: (channels, frames), or (instances, channels, frames) when instances > 1.
        Returns (outputs, frames), or (instances, outputs, frames).
        """
        x, frames = self._check_inputs(inputs, frames)
        self._sync_parameters()
        out = self._execute(x, frames)  # (B, O, frames)
        return out[0] if self.instances == 1 else out

    def _check_inputs(self, inputs, frames):
        if frames is not None and not (isinstance(frames, Integral) and frames > 0):
            raise RunInputError(f"frames must be a positive int, got {frames!r}")
        B, C = self.instances, self.n_inputs
        if inputs is None:
            if C:
                raise RunInputError(f"the graph reads {C} input channel(s); run() needs inputs of shape "
                                    f"{self._want_shape(frames)}")
            return np.zeros((B, 0, frames or self.frame_count), self.dtype), frames or self.frame_count
        x = np.asarray(inputs)
        if x.dtype.kind not in "fiub":
            raise RunInputError(f"inputs must be real numbers, got dtype {x.dtype}")
        if B == 1 and x.ndim == 1 and C == 1:
            x = x[None]
        if B == 1 and x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[0] != B or x.shape[1] != C:
            raise RunInputError(f"inputs have shape {x.shape}; expected {self._want_shape(frames)}")
        if frames is not None and x.shape[2] != frames:
            raise RunInputError(f"inputs have {x.shape[2]} frames but frames={frames}")
        if x.shape[2] == 0:
            raise RunInputError("inputs have 0 frames")
        return np.ascontiguousarray(x, self.dtype), x.shape[2]

    def _want_shape(self, frames) -> str:
        n = frames or "frames"
        return f"({self.n_inputs}, {n})" if self.instances == 1 else f"({self.instances}, {self.n_inputs}, {n})"

    def _execute(self, x, frames) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"<dgen {self.backend} program: {len(self.graph)} nodes, {len(self.schedule.blocks)} blocks, "
                f"{self.instances} instance(s), {self.n_inputs} in / {self.n_outputs} out>")
