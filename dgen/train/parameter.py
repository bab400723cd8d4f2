"""Learnable parameters: a cell holding a value per instance, read by a `param` node."""

from __future__ import annotations

import numpy as np

from .. import errors


class Parameter:
    """A learnable value. `value` is a float, or an array of one value per instance."""

    def __init__(self, graph, value, name=None, min=None, max=None):
        from ..ops import Op

        self.graph = graph
        self.name = name or f"param{len(graph.parameters)}"
        if min is not None and max is not None and not min <= max:
            raise errors.TrainingError(f"parameter {self.name!r}: min {min} > max {max}")
        self.min, self.max = min, max
        self.value = value
        self.cell = graph.alloc(1, init=float(np.ravel(self._value)[0]))
        self._node = graph.n(Op.param(self.cell, self.name))
        self.grad = 0.0
        graph.parameters.append(self)

    @property
    def value(self):
        v = self._value
        return float(v[0]) if v.size == 1 else v.copy()

    @value.setter
    def value(self, v):
        arr = np.atleast_1d(np.asarray(v, np.float64)).ravel()
        if not np.all(np.isfinite(arr)):
            raise errors.TrainingError(f"parameter {self.name!r}: value {v!r} is not finite")
        self._value = self.clamp(arr)

    def set_checked(self, arr: np.ndarray) -> None:
        """value = arr, a finite float64 array (the optimizer's result): no conversion, no check."""
        self._value = self.clamp(arr)

    def clamp(self, arr):
        # np.maximum/np.minimum: what np.clip computes, without its dispatch cost (this runs
        # every training step)
        if self.min is not None:
            arr = np.maximum(arr, self.min)
        if self.max is not None:
            arr = np.minimum(arr, self.max)
        return arr

    def node(self):
        return self._node

    def instance_values(self, instances: int) -> np.ndarray:
        v = self._value
        if v.size not in (1, instances):
            raise errors.RunInputError(
                f"parameter {self.name!r} has {v.size} values but the program runs {instances} instances"
            )
        return np.broadcast_to(v, (instances,))

    def raw_values(self, instances: int) -> np.ndarray:
        """The stored values, (1,) or (instances,), not broadcast (the per-step fast path)."""
        v = self._value
        if v.size != 1 and v.size != instances:
            self.instance_values(instances)  # raises with the message
        return v

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, value={self.value}, grad={self.grad})"
