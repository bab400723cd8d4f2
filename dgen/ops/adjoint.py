"""Ops that only the backward (adjoint) graph uses: tape reads and gradient accumulators.

The backward graph runs frames from last to first. These ops connect it to the forward
pass (`tape`) and to the parameter gradients (`grad_accum`); `memory_accum`/`memory_take`
are the adjoints of memory_read/memory_write.
"""

from __future__ import annotations

from .base import SOURCE, Primitive, Stateful, register
from .state import _instance_axis, wrap_index


@register
class Tape(Primitive):
    """y = the forward value of node `ref_id` at this frame (recorded by the forward pass)"""

    name, arity, kind = "tape", 0, SOURCE

    def __init__(self, ref_id: int):
        self.ref_id = ref_id

    def params(self):
        return (self.ref_id,)


@register
class GradAccum(Stateful):
    """s := s + x (the gradient of a parameter: a sum over frames); y = x"""

    name, arity = "grad_accum", 1

    def step(self, mem, base, sr, x):
        mem[base] = mem[base] + x
        return x


@register
class MemoryAccum(Stateful):
    """adjoint of memory_read: mem_c[j] += x (j as memory_read); y = x"""

    name, arity, cell_role = "memory_accum", 2, "memory"

    def step(self, mem, base, sr, index, x):
        at = (base + wrap_index(index, self.cell.size), *_instance_axis(mem))
        mem[at] = mem[at] + x
        return x


@register
class MemoryTake(Stateful):
    """adjoint of memory_write: y = mem_c[j]; mem_c[j] := 0"""

    name, arity, cell_role = "memory_take", 1, "memory"

    def step(self, mem, base, sr, index):
        at = (base + wrap_index(index, self.cell.size), *_instance_axis(mem))
        y = mem[at].copy()
        mem[at] = 0.0
        return y
