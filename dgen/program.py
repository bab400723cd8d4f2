"""What `dgen.compile` returns: a runnable program with its own state memory.

Backends subclass `Program` and implement `_execute`. This class owns what they share:
checking `run()` arguments, the memory block (one row of floats per cell slot, one column
per instance), parameter values, and output assembly.

Thread safety (docs/reliability.md): separate programs may run in separate threads at
once. One program has one state memory, so it runs one call at a time: `run`, `reset` and
the training calls of a program entered from a second thread while one is in progress
raise `ConcurrentRunError` instead of corrupting the state.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from numbers import Integral

import numpy as np

from .errors import ConcurrentRunError, RunInputError


@functools.cache
def _float_max(dtype) -> float:
    return float(np.finfo(dtype).max)


def _positive_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool) and v > 0


class Program:
    backend = "?"
    dtype = np.float32

    def __init__(self, plan, frame_count: int, instances: int = 1):
        if not _positive_int(frame_count):
            raise RunInputError(f"frame_count must be a positive int, got {frame_count!r}")
        if not _positive_int(instances):
            raise RunInputError(f"instances must be a positive int, got {instances!r}")
        self.plan, self.graph = plan, plan.graph
        self.frame_count, self.instances = int(frame_count), int(instances)
        self.n_inputs = self.graph.input_channels()
        outs = self.graph.outputs()
        self.n_outputs = max(outs) + 1 if outs else 0
        self.mem = np.zeros((plan.layout.size, self.instances), self.dtype)
        self._busy = threading.Lock()
        self.reset()

    @contextmanager
    def exclusive(self, what: str):
        """Hold this program's state for one call; a second thread gets ConcurrentRunError."""
        if not self._busy.acquire(blocking=False):
            raise ConcurrentRunError(
                f"{what}: this {self.backend} program is already running in another thread; a program has "
                "one state memory and runs one call at a time (compile one program per thread)"
            )
        try:
            yield
        finally:
            self._busy.release()

    @property
    def schedule(self):
        return self.plan.schedule

    @property
    def source(self) -> str:
        return getattr(self, "_source", "")

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """State back to zero (cells with an initial value back to it); parameters kept."""
        with self.exclusive("reset()"):
            self.mem[:] = 0
            for at, size, init in self.plan.layout.inits:
                self.mem[at : at + size] = init

    def _sync_parameters(self) -> None:
        # once per run and per training step: plain floats where a parameter has one value
        limit = _float_max(self.dtype)
        offsets = self.plan.layout.offsets
        for p in self.graph.parameters:
            values = p.raw_values(self.instances)  # (1,) or (B,), finite
            big = not abs(float(values[0])) <= limit if values.size == 1 else np.abs(values).max() > limit
            if big:
                raise RunInputError(
                    f"parameter {p.name!r}: value {p.value} is beyond the {self.dtype.name} "
                    f"range of the {self.backend} backend"
                )
            self.mem[offsets[p.cell.id]] = values

    def mem_view(self):
        """(M,) for one instance (the scalar fast path), (M, B) for more; shares self.mem."""
        return self.mem[:, 0] if self.instances == 1 else self.mem

    def channel_arrays(self, x):
        """(B, C, N) checked inputs -> per channel arrays (N,) or (N, B), as kernels take them."""
        return [x[0, c] if self.instances == 1 else np.ascontiguousarray(x[:, c].T) for c in range(x.shape[1])]

    # ------------------------------------------------------------------ running
    def run(self, inputs=None, frames=None, out=None) -> np.ndarray:
        """Render `frames` frames (default frame_count); state carries over between calls.

        inputs: (channels, frames), or (instances, channels, frames) when instances > 1.
        Returns (outputs, frames), or (instances, outputs, frames).
        out: optional C-contiguous array of exactly that shape and the program's dtype;
        the result is written into it and `out` itself is returned (no allocation per call).
        """
        x, frames = self._check_inputs(inputs, frames)
        if out is not None:
            self._check_out(out, x, frames)
        with self.exclusive("run()"):
            self._sync_parameters()
            if out is None:
                res = self._execute(x, frames)  # (B, O, frames)
                return res[0] if self.instances == 1 else res
            self._execute_into(x, frames, out if self.instances > 1 else out[None])
        return out

    def _check_out(self, out, x, frames) -> None:
        want = (self.n_outputs, frames) if self.instances == 1 else (self.instances, self.n_outputs, frames)
        if not isinstance(out, np.ndarray):
            raise RunInputError(
                f"out must be a NumPy array of shape {want} and dtype {np.dtype(self.dtype).name}, "
                f"got {type(out).__name__}"
            )
        if out.shape != want:
            raise RunInputError(
                f"out has shape {out.shape}; this run writes {want} (outputs, frames)"
                f"{' with a leading instance axis' if self.instances > 1 else ''}"
            )
        if out.dtype != self.dtype:
            raise RunInputError(
                f"out has dtype {out.dtype}; the {self.backend} backend writes {np.dtype(self.dtype).name}"
            )
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise RunInputError("out must be C-contiguous and writeable (pass np.empty(shape, dtype))")
        if isinstance(x, np.ndarray) and np.may_share_memory(out, x):  # (CUDA takes CuPy inputs)
            raise RunInputError("out overlaps the inputs; give it its own array")

    def _execute_into(self, x, frames, out) -> None:
        """Write the (B, O, frames) result into `out`; backends that can, write it in place."""
        out[...] = self._execute(x, frames)

    def _check_inputs(self, inputs, frames):
        if frames is not None and not _positive_int(frames):
            raise RunInputError(f"frames must be a positive int, got {frames!r}")
        B, C = self.instances, self.n_inputs
        if inputs is None:
            if C:
                raise RunInputError(
                    f"the graph reads {C} input channel(s); run() needs inputs of shape {self._want_shape(frames)}"
                )
            return np.zeros((B, 0, frames or self.frame_count), self.dtype), frames or self.frame_count
        try:
            x = np.asarray(inputs)
        except ValueError as e:  # ragged nested lists
            raise RunInputError(f"inputs are not a rectangular array: {e}") from e
        if x.dtype.kind not in "fiub":
            raise RunInputError(f"inputs must be real numbers, got dtype {x.dtype}")
        given = x.shape
        if B == 1 and x.ndim == 1 and C == 1:
            x = x[None]
        if B == 1 and x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[0] != B or x.shape[1] != C:
            raise RunInputError(f"inputs have shape {given}; expected {self._want_shape(frames)}{self._shape_hint(x)}")
        if frames is not None and x.shape[2] != frames:
            raise RunInputError(f"inputs have {x.shape[2]} frames but frames={frames}")
        if x.shape[2] == 0:
            raise RunInputError("inputs have 0 frames")
        if x.dtype == self.dtype and x.flags.c_contiguous:  # nothing to convert, nothing can overflow
            return x, x.shape[2]
        try:
            with np.errstate(over="raise"):
                return np.ascontiguousarray(x, self.dtype), x.shape[2]
        except FloatingPointError:
            b, c, n = np.argwhere(np.isfinite(x) & (np.abs(x) > np.finfo(self.dtype).max))[0]
            raise RunInputError(
                f"inputs: value {float(x[b, c, n])!r} (instance {b}, channel {c}, frame {n}) is "
                f"beyond the {self.dtype.name} range of the {self.backend} backend"
            ) from None

    def _shape_hint(self, x) -> str:
        """What is wrong with a (B, C, N)-shaped x, in words."""
        if x.ndim != 3:
            return ""
        if x.shape[0] != self.instances:
            return f" (the program runs {self.instances} instance(s), inputs have {x.shape[0]})"
        return f" (the graph reads {self.n_inputs} input channel(s), inputs have {x.shape[1]})"

    def _want_shape(self, frames) -> str:
        n = frames or "frames"
        return f"({self.n_inputs}, {n})" if self.instances == 1 else f"({self.instances}, {self.n_inputs}, {n})"

    def _execute(self, x, frames) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"<dgen {self.backend} program: {len(self.graph)} nodes, {len(self.schedule.blocks)} blocks, "
            f"{self.instances} instance(s), {self.n_inputs} in / {self.n_outputs} out>"
        )
