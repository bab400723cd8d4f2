"""The PyTorch bridge: a compiled dgen program as a `torch.autograd.Function` and an `nn.Module`.

    import dgen.torch
    synth = dgen.torch.DgenModule(g, backend="reference")   # every dgen.Parameter -> nn.Parameter
    y = synth(x)                       # x: (C, N) or (B, C, N) tensor -> (O, N) or (B, O, N)
    loss = torch.nn.functional.mse_loss(y, target); loss.backward()

Gradients come from the program's own adjoint (`TrainingProgram.vjp`): exact, through state and
feedback. Semantics chosen here:
- State: each call starts from the reset state (a pure function of inputs and parameters, which
  is what autograd and `gradcheck` assume). `stateful=True` carries state across calls (stream
  in chunks); the state at the start of a call is then a constant for the gradient (truncated
  backpropagation through time at call boundaries). `module.reset()` zeroes it.
- Tensors: CPU only. The program's dtype is float64 on the reference backend and float32 on C;
  inputs and parameters are cast to it at the boundary, outputs come back in it, and each
  gradient comes back in its tensor's own dtype.
- Parameters: a tensor of shape () is shared by every instance (its gradient is the sum over
  instances); shape (B,) gives each instance its own value. `dgen.Parameter` min/max still
  clamp the value the program sees (the gradient is the one at the clamped value).
- The backward pass runs the forward again from the saved start state, then the adjoint: a
  call with gradients costs about two forward runs plus one backward run. No double backward.

torch is imported here only, so `import dgen` never needs it. This module is named `torch`
inside the package; the absolute imports below (with `from __future__ import annotations`)
reach the real PyTorch.
"""

from __future__ import annotations

import numpy as np
import torch

from . import errors
from .train.parameter import Parameter

_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}


def _check_cpu(t, what):
    if not isinstance(t, torch.Tensor):
        raise errors.RunInputError(f"{what}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise errors.RunInputError(
            f"{what} is on device {t.device}; dgen.torch runs on CPU tensors only (move it with .cpu())"
        )
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise errors.RunInputError(f"{what}: expected real numbers, got dtype {t.dtype}")


class DgenFunction(torch.autograd.Function):
    """apply(runner, x or None, frames, *parameter tensors) -> outputs tensor.

    `runner` is a `_Runner` (the program, its parameters and the state policy). Prefer
    `dgen.torch.apply` or `DgenModule`, which build it and check shapes first.
    """

    @staticmethod
    def forward(ctx, runner, x, frames, *values):
        xs = None if x is None else x.detach().numpy()
        ps = [v.detach().numpy().astype(np.float64) for v in values]
        start = runner.start_state()
        out = runner.run(xs, frames, ps)
        ctx.runner, ctx.frames, ctx.start, ctx.x_np, ctx.p_np = runner, frames, start, xs, ps
        ctx.x_meta = None if x is None else (x.shape, x.dtype)
        ctx.p_meta = [(v.shape, v.dtype) for v in values]
        return torch.from_numpy(np.ascontiguousarray(out)).to(runner.torch_dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, upstream):
        runner = ctx.runner
        dx, grads = runner.vjp(ctx.start, ctx.x_np, ctx.frames, ctx.p_np, upstream.detach().numpy())
        d_x = None
        if ctx.x_meta is not None and ctx.needs_input_grad[1]:
            shape, dtype = ctx.x_meta
            d_x = torch.from_numpy(dx.reshape(shape)).to(dtype)
        d_values = []
        for g, (shape, dtype) in zip(grads, ctx.p_meta):
            g = g.sum() if len(shape) == 0 else g.reshape(shape)  # a shared value: sum over instances
            d_values.append(torch.as_tensor(g, dtype=dtype))
        return (None, d_x, None, *d_values)


class _Runner:
    """A TrainingProgram, the dgen.Parameters it feeds from tensors, and the state policy."""

    def __init__(self, program, parameters, stateful):
        if not hasattr(program, "vjp"):
            raise errors.GraphError(f"dgen.torch needs a program compiled with backwards=True (got {program!r})")
        self.program, self.parameters, self.stateful = program, list(parameters), stateful
        fwd = program.forward
        self.B = program.instances
        self.n_inputs, self.n_outputs = fwd.n_inputs, fwd.n_outputs
        self.torch_dtype = _DTYPES[np.dtype(fwd.dtype)]

    @property
    def mem(self):
        return self.program.forward.mem  # read each time: a backend may swap the array

    def start_state(self):
        """The state the coming call starts from (reset unless stateful); a copy to replay."""
        if not self.stateful:
            self.program.reset()
        return self.mem.copy()

    def _set(self, values):
        for p, v in zip(self.parameters, values):
            p.value = v if v.ndim == 0 else v.ravel()

    def run(self, x, frames, values):
        self._set(values)
        out = self.program.run(x, frames)
        return out[None] if (x is not None and x.ndim == 3 and self.B == 1) else out

    def vjp(self, start, x, frames, values, upstream):
        """Replay the call from `start` and pull `upstream` back; the live state is kept."""
        live = self.mem.copy()
        try:
            self.mem[...] = start
            self._set(values)
            _, dx, grads = self.program.vjp(x, upstream, frames, self.parameters)
        finally:
            self.mem[...] = live
        return np.asarray(dx, np.float64), [np.asarray(grads[p], np.float64) for p in self.parameters]

    # ------------------------------------------------------------------ checks
    def check_inputs(self, x, frames):
        B, C = self.B, self.n_inputs
        want = f"({C}, frames)" if B == 1 else f"({B}, {C}, frames)"
        if x is None:
            if C:
                raise errors.RunInputError(f"the patch reads {C} input channel(s); pass a tensor of shape {want}")
            return frames
        _check_cpu(x, "inputs")
        ok = (x.ndim == 2 and B == 1) or x.ndim == 3
        if not ok or x.shape[-2] != C or (x.ndim == 3 and x.shape[0] != B) or x.shape[-1] == 0:
            raise errors.RunInputError(f"inputs have shape {tuple(x.shape)}; expected {want}")
        if frames is not None and frames != x.shape[-1]:
            raise errors.RunInputError(f"inputs have {x.shape[-1]} frames but frames={frames}")
        return x.shape[-1]

    def check_values(self, values):
        if len(values) != len(self.parameters):
            raise errors.RunInputError(
                f"expected {len(self.parameters)} parameter tensors "
                f"({[p.name for p in self.parameters]}), got {len(values)}"
            )
        for p, v in zip(self.parameters, values):
            _check_cpu(v, f"parameter {p.name!r}")
            if v.ndim > 1 or (v.ndim == 1 and v.shape[0] not in (1, self.B)):
                raise errors.RunInputError(
                    f"parameter {p.name!r} has shape {tuple(v.shape)}; expected () "
                    f"(shared) or ({self.B},) (one value per instance)"
                )


def apply(program, x=None, values=(), parameters=None, frames=None, stateful=False):
    """Functional form: run `program` (compiled with backwards=True) on tensor `x` with
    `values[i]` as the value of `parameters[i]` (default: every parameter of the graph)."""
    params = program.graph.parameters if parameters is None else parameters
    runner = _Runner(program, params, stateful)
    return _call(runner, x, list(values), frames)


def _call(runner, x, values, frames):
    frames = runner.check_inputs(x, frames)
    runner.check_values(values)
    return DgenFunction.apply(runner, x, frames, *values)


class DgenModule(torch.nn.Module):
    """A dgen patch as a layer. Its dgen.Parameters become `nn.Parameter`s (in `self.params`, by
    name) mirrored into `Parameter.value` at each call; `forward(x, frames=None, **values)`
    may replace any of them for one call with tensors computed elsewhere (e.g. by a network).

    graph_or_program: a `dgen.Graph` (compiled here with backwards=True) or a program compiled
    with backwards=True. parameters: the dgen.Parameters to expose (default: all of the graph's).
    """

    def __init__(
        self, graph_or_program, parameters=None, backend="c", frame_count=4096, instances=1, stateful=False, **options
    ):
        super().__init__()
        from .graph import Graph
        from .pipeline import compile as dgen_compile

        prog = graph_or_program
        if isinstance(graph_or_program, Graph):
            prog = dgen_compile(
                graph_or_program,
                backend=backend,
                frame_count=frame_count,
                backwards=True,
                instances=instances,
                **options,
            )
        params = list(prog.graph.parameters if parameters is None else parameters)
        if not all(isinstance(p, Parameter) for p in params):
            raise errors.GraphError("parameters must be dgen.Parameter objects")
        names = [p.name for p in params]
        if len(set(names)) != len(names) or any("." in n or not n for n in names):
            raise errors.GraphError(f"parameter names must be unique and contain no '.', got {names}")
        self.runner = _Runner(prog, params, stateful)
        dtype = self.runner.torch_dtype
        self.params = torch.nn.ParameterDict(
            {p.name: torch.nn.Parameter(torch.tensor(np.asarray(p.value, np.float64), dtype=dtype)) for p in params}
        )

    @property
    def program(self):
        return self.runner.program

    @property
    def stateful(self) -> bool:
        return self.runner.stateful

    @stateful.setter
    def stateful(self, on: bool) -> None:
        self.runner.stateful = bool(on)

    def reset(self) -> None:
        """Zero the program's state (matters with stateful=True)."""
        self.program.reset()

    def forward(self, x=None, frames=None, **values):
        unknown = set(values) - set(self.params.keys())
        if unknown:
            raise errors.RunInputError(
                f"unknown parameter(s) {sorted(unknown)}; this module has {list(self.params.keys())}"
            )
        tensors = [values.get(p.name, self.params[p.name]) for p in self.runner.parameters]
        return _call(self.runner, x, tensors, frames)

    def extra_repr(self) -> str:
        p = self.program
        return (
            f"backend={p.backend!r}, instances={p.instances}, inputs={self.runner.n_inputs}, "
            f"outputs={self.runner.n_outputs}, stateful={self.stateful}"
        )
