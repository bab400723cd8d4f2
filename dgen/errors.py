"""Every exception dgen raises on purpose.

Messages name the culprit: the node id, its op and what is wrong, so a user can find
the line that built it.
"""


class DgenError(Exception):
    """Base class of all dgen errors."""


class GraphError(DgenError, ValueError):
    """A graph that cannot mean anything: bad inputs, loops, conflicting state."""


class ArityError(GraphError):
    """A node got the wrong number of inputs."""


class ForeignNodeError(GraphError):
    """A node's input belongs to another graph."""


class UnknownOpError(GraphError):
    """`g.n` was given something that is not a dgen op."""


class NonFiniteConstantError(GraphError):
    """A constant is NaN or infinite."""


class AlgebraicLoopError(GraphError):
    """A cycle within one frame that no history cell breaks."""


class CellConflictError(GraphError):
    """Two writers to one history cell, or one cell owned by two stateful ops."""


class WindowSizeError(GraphError):
    """A spectral window that is not a power of two >= 4."""


class RunInputError(DgenError, ValueError):
    """`run()` was given inputs of the wrong shape, dtype or a bad frame count."""


class BackendUnavailable(DgenError, RuntimeError):
    """The backend cannot run here (no compiler, no GPU, missing package)."""


class ConcurrentRunError(DgenError, RuntimeError):
    """One program was run (or reset) from two threads at once: it has one state memory."""


class TrainingError(DgenError, RuntimeError):
    """Training went wrong: a parameter became NaN or infinite."""


def describe(node) -> str:
    """`node 12 (mul)`: the way every message names a node."""
    return f"node {node.id} ({node.op.name})"
