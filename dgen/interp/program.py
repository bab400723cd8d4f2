"""The reference backend as a Program: float64 by default, float32 on request."""

from __future__ import annotations

import numpy as np

from ..program import Program
from .reference import ReferenceKernel


class ReferenceProgram(Program):
    backend = "reference"

    def __init__(self, plan, frame_count, instances=1, dtype=np.float64, keep=()):
        self.dtype = np.dtype(dtype)
        super().__init__(plan, frame_count, instances)
        self.kernel = ReferenceKernel(plan.graph, plan.schedule, plan.layout, self.dtype,
                                      reverse=plan.reverse, keep=keep)
        self._source = plan.schedule.dump(plan.graph)

    def execute_values(self, x, frames, tape=None) -> dict:
        return self.kernel.execute(self.mem_view(), frames, self.channel_arrays(x), tape)

    def _execute(self, x, frames):
        values = self.execute_values(x, frames)
        out = np.zeros((self.instances, self.n_outputs, frames), self.dtype)
        for ch, nd in self.graph.outputs().items():
            v = values[nd.id]
            out[:, ch] = v if self.instances == 1 else v.T
        return out
