"""Sources, sinks and stateful primitives.

history_read/write and memory_read/write are the true state primitives; phasor, accum and
latch are first-class for speed in the reference and `expand` into history form for the
compiled backends and autodiff (so their gradients come from the primitives').
"""

from __future__ import annotations

import math

import numpy as np

from .. import errors
from ..errors import describe
from .base import SINK, SOURCE, Primitive, Stateful, register


@register
class Constant(Primitive):
    """y = v"""

    name, arity, kind = "constant", 0, SOURCE

    def __init__(self, value: float):
        self.value = float(value)

    def params(self):
        return (self.value,)

    def check(self, node):
        super().check(node)
        if not math.isfinite(self.value):
            raise errors.NonFiniteConstantError(f"{describe(node)}: value {self.value} is not finite")


@register
class Input(Primitive):
    """y = external input channel i at frame n"""

    name, arity, kind = "input", 0, SOURCE

    def __init__(self, channel: int):
        if not (isinstance(channel, int) and channel >= 0):
            raise errors.GraphError(f"input: channel must be an int >= 0, got {channel!r}")
        self.channel = channel

    def params(self):
        return (self.channel,)


@register
class Output(Primitive):
    """y = x; also written to output channel i"""

    name, arity, kind = "output", 1, SINK

    def __init__(self, channel: int):
        if not (isinstance(channel, int) and channel >= 0):
            raise errors.GraphError(f"output: channel must be an int >= 0, got {channel!r}")
        self.channel = channel

    def params(self):
        return (self.channel,)

    def ref(self, x):
        return x

    def vjp(self, g, y, x):
        return (g,)


@register
class Param(Primitive):
    """y = the parameter's current value (its cell)"""

    name, arity, kind, cell_role = "param", 0, SOURCE, "owned"

    def __init__(self, cell, label: str = ""):
        self.cell, self.label = cell, label


@register
class HistoryRead(Stateful):
    """y = s_c, the value history_write(c) stored in the previous frame (0 at first)"""

    name, arity, cell_role = "history_read", 0, "history"

    def step(self, mem, base, sr):
        return mem[base].copy()


@register
class HistoryWrite(Stateful):
    """y = x; s_c := x for the next frame"""

    name, arity, cell_role = "history_write", 1, "history"

    def step(self, mem, base, sr, x):
        mem[base] = x
        return x


def wrap_index(index, size: int):
    """floor(index) wrapped into [0, size); a non-finite index gives 0."""
    with np.errstate(invalid="ignore"):
        j = np.where(np.isfinite(index), np.floor(index), 0.0)
        return np.mod(j, size).astype(np.int64)


def _instance_axis(mem):
    return () if mem.ndim == 1 else (np.arange(mem.shape[1]),)


@register
class MemoryRead(Stateful):
    """y = mem_c[j], j = floor(index) wrapped into [0, size); non-finite index -> j = 0"""

    name, arity, cell_role = "memory_read", 1, "memory"

    def step(self, mem, base, sr, index):
        j = wrap_index(index, self.cell.size)
        return mem[(base + j, *_instance_axis(mem))].copy()


@register
class MemoryWrite(Stateful):
    """mem_c[j] := value (j as memory_read); y = value"""

    name, arity, cell_role = "memory_write", 2, "memory"

    def step(self, mem, base, sr, index, value):
        j = wrap_index(index, self.cell.size)
        mem[(base + j, *_instance_axis(mem))] = value
        return value


def _wrap01(v):
    return v - np.floor(v)


def _history(g, cell):
    from . import Op

    return g.n(Op.history_read(cell)), lambda x: g.n(Op.history_write(cell), x)


def _gswitch(g, c, a, b):
    from . import Op

    return g.n(Op.gswitch, c, a, b)


def _floor(g, x):
    from . import Op

    return g.n(Op.floor, x)


@register
class Phasor(Stateful):
    """y = s; then s := 0 if reset > 0 else wrap01(s + freq/sr)"""

    name, arity = "phasor", 2

    def step(self, mem, base, sr, freq, reset):
        s = mem[base].copy()
        mem[base] = np.where(reset > 0, 0.0, _wrap01(s + freq / sr))
        return s

    def expand(self, g, sr, freq, reset):
        s, write = _history(g, self.cell)
        v = s + freq / sr
        write(_gswitch(g, reset, 0.0, v - _floor(g, v)))
        return s


@register
class Accum(Stateful):
    """y = s; then s := min if reset > 0 else s + incr, wrapped into [min, max) if given"""

    name, arity = "accum", (2, 4)

    def check(self, node):
        super().check(node)
        if len(node.inputs) == 3:
            raise errors.ArityError(f"{describe(node)}: expected 2 or 4 inputs (min and max together), got 3")

    def step(self, mem, base, sr, incr, reset, lo=0.0, hi=None):
        s = mem[base].copy()
        v = s + incr
        if hi is not None:
            span = hi - lo
            v = lo + (v - lo) - span * np.floor((v - lo) / span)
        mem[base] = np.where(reset > 0, lo, v)
        return s

    def expand(self, g, sr, incr, reset, lo=None, hi=None):
        s, write = _history(g, self.cell)
        v = s + incr
        if hi is not None:
            span = hi - lo
            v = lo + (v - lo) - span * _floor(g, (v - lo) / span)
        write(_gswitch(g, reset, 0.0 if lo is None else lo, v))
        return s


@register
class Latch(Stateful):
    """if trigger > 0: s := value; y = s (the new value on a trigger frame)"""

    name, arity = "latch", 2

    def step(self, mem, base, sr, value, trigger):
        s = np.where(trigger > 0, value, mem[base])
        mem[base] = s
        return s

    def expand(self, g, sr, value, trigger):
        s, write = _history(g, self.cell)
        return write(_gswitch(g, trigger, value, s))


@register
class Placeholder(Primitive):
    """y = the node bound to it later with g.bind(placeholder, node): a forward reference,
    so patches can be wired in any order. A cycle through placeholders with no history
    cell in it is an algebraic loop (an error naming its nodes)."""

    name, arity, kind = "placeholder", 0, SOURCE

    def __init__(self, label: str = ""):
        self.label = label

    def params(self):
        return (self.label,) if self.label else ()
