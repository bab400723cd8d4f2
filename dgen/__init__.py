"""dgen: a sample-level audio DSP compiler with automatic differentiation.

Build a graph with `Graph` and `Op`, compile it with `compile` (C SIMD, CUDA or the NumPy
reference), run it, and fit its parameters with `TrainingContext`.
"""

from .audio import load_audio, save_audio
from .errors import (
    AlgebraicLoopError,
    ArityError,
    BackendUnavailable,
    CellConflictError,
    ConcurrentRunError,
    DgenError,
    ForeignNodeError,
    GraphError,
    NonFiniteConstantError,
    RunInputError,
    TrainingError,
    UnknownOpError,
    WindowSizeError,
)
from .fit import fit_many
from .graph import Cell, Graph, Node
from .ops import Op
from .pipeline import compile
from .plot import plot_history
from .render import generate
from .train import SGD, Adam, Optimizer, Parameter, TrainingContext

__version__ = "0.1.0"

__all__ = [
    "Graph",
    "Node",
    "Cell",
    "Op",
    "compile",
    "generate",
    "DgenError",
    "GraphError",
    "ArityError",
    "ForeignNodeError",
    "UnknownOpError",
    "NonFiniteConstantError",
    "AlgebraicLoopError",
    "CellConflictError",
    "WindowSizeError",
    "RunInputError",
    "BackendUnavailable",
    "TrainingError",
    "ConcurrentRunError",
    "Parameter",
    "TrainingContext",
    "SGD",
    "Adam",
    "Optimizer",
    "load_audio",
    "save_audio",
    "plot_history",
    "fit_many",
]
