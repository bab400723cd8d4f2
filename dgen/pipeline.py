"""compile(): every stage in order, one straight function. DGEN_DEBUG=1 prints each stage."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import errors
from .analysis import dependencies, find_feedback, memory_layout, schedule_blocks, verify
from .transform import expand_stateful
from .transform.resolve import resolve_placeholders


@dataclass(frozen=True)
class Plan:
    """A graph ready for a backend: its schedule and memory layout."""

    graph: object
    feedback: object
    schedule: object
    layout: object
    reverse: bool = False  # backward graphs run frames from last to first
    node_map: dict | None = None  # user graph node id -> id in `graph` (after expansion)

    def dump(self) -> str:
        return "\n".join([self.feedback.dump(self.graph), self.schedule.dump(self.graph), self.layout.dump()])


def _debug(stage: str, text: str) -> None:
    if os.environ.get("DGEN_DEBUG", "0") not in ("", "0"):
        print(f"--- {stage}\n{text}")


def plan(graph, expand: bool, reverse: bool = False) -> Plan:
    """verify -> [expand] -> feedback -> dependencies -> schedule -> memory layout."""
    graph, node_map = resolve_placeholders(graph)
    verify(graph)
    if expand:
        graph, mapping = expand_stateful(graph)
        node_map = {i: mapping[j].id for i, j in node_map.items()}
        _debug("expand", f"{len(graph)} nodes")
    deps = dependencies(graph)
    feedback = find_feedback(graph, deps)
    _debug("feedback", feedback.dump(graph))
    schedule = schedule_blocks(graph, deps, feedback)
    _debug("schedule", schedule.dump(graph))
    layout = memory_layout(graph)
    _debug("layout", layout.dump())
    return Plan(graph, feedback, schedule, layout, reverse, node_map)


def compile(graph, backend: str = "c", frame_count: int = 4096, backwards: bool = False, instances: int = 1, **options):
    """Compile a graph into a runnable program (spec/api.md)."""
    from .backends import BACKENDS

    if backend not in BACKENDS:
        raise errors.BackendUnavailable(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](graph, frame_count=frame_count, backwards=backwards, instances=instances, **options)
