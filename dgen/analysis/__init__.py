"""Read-only passes: verify, feedback, order, schedule."""

from .deps import Dependencies, dependencies
from .feedback import FeedbackInfo, find_feedback
from .schedule import BUFFER, SEQUENTIAL, VECTOR, Block, Schedule, order, schedule_blocks
from .verify import Layout, memory_layout, verify

__all__ = [
    "Dependencies",
    "dependencies",
    "FeedbackInfo",
    "find_feedback",
    "Block",
    "Schedule",
    "order",
    "schedule_blocks",
    "VECTOR",
    "SEQUENTIAL",
    "BUFFER",
    "Layout",
    "memory_layout",
    "verify",
]
