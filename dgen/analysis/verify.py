"""Whole-graph checks that single `g.n` calls cannot make."""

from __future__ import annotations

from dataclasses import dataclass

from .. import errors
from ..errors import describe


def verify(graph) -> None:
    """Raise a GraphError naming the node for anything the compiler cannot give meaning to."""
    seen_outputs = {}
    for nd in graph.nodes:
        nd.op.check(nd)
        if nd.op.name == "output":
            ch = nd.op.channel
            if ch in seen_outputs:
                raise errors.GraphError(
                    f"{describe(nd)}: output channel {ch} is already written by {describe(seen_outputs[ch])}"
                )
            seen_outputs[ch] = nd


@dataclass(frozen=True)
class Layout:
    """Where each cell lives in the flat state memory of one instance."""

    offsets: dict
    size: int
    inits: tuple  # (offset, size, init) for cells whose reset value is not 0

    def dump(self) -> str:
        cells = ", ".join(f"c{c}@{o}" for c, o in self.offsets.items())
        return f"memory: {self.size} floats per instance ({cells})"


def memory_layout(graph) -> Layout:
    offsets, inits, at = {}, [], 0
    for cell in graph.cells:
        offsets[cell.id] = at
        if cell.init != 0.0:
            inits.append((at, cell.size, cell.init))
        at += cell.size
    return Layout(offsets, at, tuple(inits))
