"""The NumPy reference interpreter: the meaning of every op, run over a schedule.

Vector blocks evaluate each node once over the whole frame range as NumPy arrays.
Sequential blocks run frame by frame; each block is turned into a small Python function
(one line per node calling that op's `ref`/`step`), which keeps the per-frame overhead low
enough to render seconds of audio. Buffer blocks call the op on whole signals.
Values are arrays of shape (frames,) for one instance and (frames, instances) for more.
"""

from __future__ import annotations

import numpy as np

from ..analysis import BUFFER, SEQUENTIAL


class ReferenceKernel:
    """Executes one scheduled graph over a frame range, forwards or (backward graphs) reversed."""

    def __init__(self, graph, schedule, layout, dtype=np.float64, reverse=False, keep=()):
        self.graph, self.schedule, self.layout = graph, schedule, layout
        self.dtype, self.reverse = np.dtype(dtype), reverse
        self.keep = set(keep) | {nd.id for nd in graph.nodes if nd.op.name == "output"}
        block_of = {n: k for k, b in enumerate(schedule.blocks) for n in b.nodes}
        self._needed_outside = {
            i for nd in graph.nodes for i in nd.inputs if block_of[i] != block_of[nd.id]
        } | self.keep
        self._seq = {k: self._compile_sequential(b) for k, b in enumerate(schedule.blocks) if b.kind == SEQUENTIAL}

    def base(self, nd) -> int:
        return self.layout.offsets[nd.op.cell.id] if nd.op.cell is not None else 0

    # ------------------------------------------------------------------ execution
    def execute(self, mem, frames: int, inputs, tape=None) -> dict:
        """Run `frames` frames. mem: (M,) or (M, B); inputs: (C, frames[, B]). Returns node values."""
        shape = (frames,) + mem.shape[1:]
        values = {}
        with np.errstate(all="ignore"):
            for k, block in enumerate(self.schedule.blocks):
                if block.kind == SEQUENTIAL:
                    self._run_sequential(k, block, mem, values, shape)
                elif block.kind == BUFFER:
                    for i in block.nodes:
                        nd = self.graph.nodes[i]
                        values[i] = nd.op.run(mem, self.base(nd), *(values[j] for j in nd.inputs))
                else:
                    for i in block.nodes:
                        values[i] = self._vector_value(self.graph.nodes[i], values, mem, shape, inputs, tape)
        return values

    def _vector_value(self, nd, values, mem, shape, inputs, tape):
        op = nd.op
        if op.name == "constant":
            return np.full(shape, op.value, self.dtype)
        if op.name == "input":
            return inputs[op.channel]
        if op.name == "param":
            return np.broadcast_to(mem[self.base(nd)], shape)
        if op.name == "tape":
            return tape[op.ref_id]
        out = np.asarray(op.ref(*(values[i] for i in nd.inputs)), self.dtype)
        return out if out.shape == shape else np.broadcast_to(out, shape)

    def _run_sequential(self, k, block, mem, values, shape):
        for i in block.nodes:
            if i in self._needed_outside:
                values[i] = np.zeros(shape, self.dtype)
        frames = range(shape[0] - 1, -1, -1) if self.reverse else range(shape[0])
        self._seq[k](frames, values, mem)

    def _compile_sequential(self, block):
        """A Python function running this block frame by frame (see module docstring)."""
        members = set(block.nodes)
        outside = sorted({i for n in block.nodes for i in self.graph.nodes[n].inputs} - members)
        env = {"sr": self.graph.sample_rate}
        head = ["def run_block(frames, V, mem):"]
        head += [f"    x{e} = V[{e}]" for e in outside]
        stored = [n for n in block.nodes if n in self._needed_outside]
        head += [f"    o{n} = V[{n}]" for n in stored]
        body = ["    for i in frames:"] + [f"        e{e} = x{e}[i]" for e in outside]
        for n in block.nodes:
            nd = self.graph.nodes[n]
            args = ", ".join(f"v{i}" if i in members else f"e{i}" for i in nd.inputs)
            if hasattr(nd.op, "step"):
                env[f"f{n}"] = nd.op.step
                call = f"f{n}(mem, {self.base(nd)}, sr{', ' if args else ''}{args})"
            else:
                env[f"f{n}"] = nd.op.ref
                call = f"f{n}({args})"
            body.append(f"        v{n} = {call}")
            if n in stored:
                body.append(f"        o{n}[i] = v{n}")
        exec("\n".join(head + body), env)  # noqa: S102 - our own generated code
        return env["run_block"]
