"""All primitive ops, and `Op`, the namespace users build graphs with.

Stateless ops are singletons (`Op.add`); ops that carry a cell, a channel or a value are
classes to call (`Op.phasor(cell)`, `Op.output(0)`, `Op.constant(1.0)`).
"""

from . import adjoint, pure, spectral, state  # noqa: F401  (registers every primitive)
from .base import BUFFER, PURE, REGISTRY, SINK, SOURCE, STATE, Primitive, Pure, Stateful, register


class Op:
    """Every primitive op by name; see docs/ops.md for their formulas."""


def _publish():
    for name, cls in REGISTRY.items():
        configured = "__init__" in vars(cls) or any("__init__" in vars(b) for b in cls.__mro__[1:-1])
        setattr(Op, name, cls if configured else cls())


_publish()

__all__ = ["Op", "Primitive", "Pure", "Stateful", "register", "REGISTRY", "PURE", "SOURCE", "SINK", "STATE", "BUFFER"]
