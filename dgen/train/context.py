"""TrainingContext: the loop state of a fit (parameters, optimizer, history, checkpoints)."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .. import errors


class TrainingContext:
    """zero_grad() -> forward_backward() -> step(), as in spec/api.md."""

    def __init__(self, parameters, optimizer, loss, program):
        if not hasattr(program, "forward_backward"):
            raise errors.GraphError("TrainingContext needs a program compiled with backwards=True")
        self.parameters, self.optimizer, self.loss, self.program = list(parameters), optimizer, loss, program
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise errors.GraphError(f"parameter names must be unique, got {names}")
        for p in self.parameters:  # cell ids of another graph would alias this graph's cells
            if not any(p is q for q in program.graph.parameters):
                raise errors.ForeignNodeError(f"parameter {p.name!r} belongs to another graph than the program's")
        if loss is not None and hasattr(program, "gradient"):
            program.gradient(loss)  # checks the loss's graph (and builds its adjoint once, now)
        self.steps = 0
        self.last_loss = None
        # per step: the loss and parameter values; floats for one instance, else float64 arrays of
        # B values (a list of B Python floats per value cost ~0.1 ms a step at B = 1024)
        self.history: list[dict] = []

    @property
    def instances(self) -> int:
        return self.program.instances

    def zero_grad(self) -> None:
        """Zero gradients and state; parameter values stay."""
        self.program.reset()
        for p in self.parameters:
            p.grad = 0.0 if self.instances == 1 else np.zeros(self.instances)

    def forward_backward(self, inputs=None):
        """Mean over frames of the loss (a float, or one per instance); sets each `.grad`."""
        loss, grads = self.program.forward_backward(self.loss, inputs, self.parameters)
        for p in self.parameters:
            g = grads[p]
            p.grad = float(g[0]) if self.instances == 1 else g
        self.last_loss = loss
        return float(loss[0]) if self.instances == 1 else loss

    def step(self) -> None:
        """One optimizer update; values clamped to [min, max]; NaN/inf stops with the culprit."""
        self.steps += 1
        loss = self.last_loss
        if loss is not None and not np.isfinite(loss).all():
            values = ", ".join(f"{p.name}={p.value}" for p in self.parameters)
            raise errors.TrainingError(
                f"the loss is {loss if self.instances > 1 else loss[0]} (not finite) at step "
                f"{self.steps}; parameter values: {values}"
            )
        updates = [(p, self._update(p)) for p in self.parameters]  # applied only when all are good
        for p, new in updates:
            p.set_checked(new)
        self._record()

    def _update(self, p) -> np.ndarray:
        """The optimizer's new values (B,) for p; raises on a non-finite gradient or result."""
        B = self.instances
        g = p.grad
        if type(g) is float:
            g = np.full(B, g)
        elif not (type(g) is np.ndarray and g.shape == (B,) and g.dtype == np.float64):
            g = np.broadcast_to(np.asarray(g, np.float64), (B,))
        if not np.isfinite(g).all():
            raise errors.TrainingError(f"parameter {p.name!r}: gradient {p.grad} is not finite at step {self.steps}")
        value = p.raw_values(B)
        value = value.copy() if value.size == B else np.full(B, value[0])
        new = self.optimizer.update(p.name, value, g)
        if not np.abs(new).max() <= self._limit():  # also false for NaN
            shown = new if B > 1 else new[0]
            dtype = self._dtype()
            why = "" if not np.all(np.isfinite(new)) else f" (beyond the {dtype.name} range of the program)"
            raise errors.TrainingError(f"parameter {p.name!r} became {shown} at step {self.steps}{why}")
        return new

    def _dtype(self):
        return np.dtype(getattr(getattr(self.program, "forward", self.program), "dtype", np.float64))

    def _limit(self) -> float:
        if getattr(self, "_max", None) is None:
            self._max = float(np.finfo(self._dtype()).max)
        return self._max

    def _record(self) -> None:
        one = self.instances == 1
        value = (lambda v: float(np.ravel(v)[0])) if one else (lambda v: np.array(v, np.float64))
        loss = self.last_loss
        row = {"step": self.steps, "loss": None if loss is None else value(loss)}
        self.history.append({**row, **{p.name: (p.value if one else value(p.value)) for p in self.parameters}})

    def train(self, steps: int, inputs=None, progress=None, callback=None):
        """Run `steps` iterations of zero_grad/forward_backward/step; returns the last loss."""
        from ..progress import progress_bar

        loss = None
        fused = getattr(self.program, "train_steps", None)  # a backend's loop without Python per step
        with progress_bar(total=steps, desc="training", enable=progress) as bar:
            if fused is not None and callback is None:
                return fused(self, steps, inputs, bar)
            for _ in range(steps):
                self.zero_grad()
                loss = self.forward_backward(inputs)
                self.step()
                bar.update(1, loss=np.min(loss))
                if callback is not None:
                    callback(self)
        return loss

    # ------------------------------------------------------------------ checkpoints
    FORMAT, VERSION = "dgen-checkpoint", 1

    def save(self, path) -> None:
        """Parameter values (one per instance), optimizer type, settings and state, step count and
        history as JSON (docs/reliability.md). Written to a temporary file and renamed over
        `path`, so a failed save leaves the previous checkpoint intact."""
        B = self.instances
        state = {
            "format": self.FORMAT,
            "version": self.VERSION,
            "steps": self.steps,
            "instances": B,
            "parameters": {
                p.name: np.broadcast_to(np.asarray(p.value, np.float64), (B,)).tolist() for p in self.parameters
            },
            "optimizer": {"type": type(self.optimizer).__name__, **self.optimizer.state_dict()},
            "history": history_json(self.history),
        }
        path = os.fspath(path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".ckpt-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def load_state(self, path) -> None:
        """Restore what `save` wrote; every mismatch with this context is a TrainingError."""
        try:
            with open(path) as f:
                state = json.load(f)
            steps, saved, opt, history = state["steps"], state["parameters"], state["optimizer"], state["history"]
        except (ValueError, KeyError, TypeError) as e:
            raise errors.TrainingError(f"{path} is not a dgen checkpoint ({e!r})") from e
        kind = type(self.optimizer).__name__
        if opt.get("type", kind) != kind:
            raise errors.TrainingError(f"checkpoint was made with {opt['type']}, not {kind}")
        by_name = {p.name: p for p in self.parameters}
        for name in saved:
            if name not in by_name:
                raise errors.TrainingError(f"checkpoint has parameter {name!r} that this context lacks")
        for name in by_name:
            if name not in saved:
                raise errors.TrainingError(f"checkpoint has no value for parameter {name!r}")
            if len(saved[name]) != self.instances:
                raise errors.TrainingError(
                    f"checkpoint has {len(saved[name])} value(s) for parameter {name!r}; "
                    f"this context trains {self.instances} instances"
                )
        for name, p in by_name.items():
            p.value = saved[name] if self.instances > 1 else saved[name][0]
        self.optimizer.load_state_dict(opt)
        self.steps, self.history = steps, [_history_row(row, self.instances) for row in history]

    @classmethod
    def load(cls, path, parameters, optimizer, loss, program):
        ctx = cls(parameters, optimizer, loss, program)
        ctx.load_state(path)
        return ctx


def history_json(history) -> list[dict]:
    """The history with plain lists for arrays (JSON)."""
    return [{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items()} for row in history]


def _history_row(row, instances) -> dict:
    """A loaded history row as `train` records it: arrays of B values when B > 1."""
    if instances == 1:
        return row
    return {k: np.asarray(v, np.float64) if isinstance(v, list) else v for k, v in row.items()}
