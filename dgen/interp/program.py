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
        self.kernel = ReferenceKernel(
            plan.graph, plan.schedule, plan.layout, self.dtype, reverse=plan.reverse, keep=keep
        )
        self._source = plan.schedule.dump(plan.graph)

    def execute_values(self, x, frames, tape=None) -> dict:
        return self.kernel.execute(self.mem_view(), frames, self.channel_arrays(x), tape)

    def _execute(self, x, frames):
        out = np.zeros((self.instances, self.n_outputs, frames), self.dtype)
        self._execute_into(x, frames, out)
        return out

    def _execute_into(self, x, frames, out):
        values = self.execute_values(x, frames)
        outs = self.graph.outputs()
        for ch in range(self.n_outputs):
            if ch not in outs:
                out[:, ch] = 0  # a channel no output node writes (out may hold anything)
                continue
            v = values[outs[ch].id]
            out[:, ch] = v if self.instances == 1 else v.T
