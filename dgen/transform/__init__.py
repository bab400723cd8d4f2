"""Graph -> graph passes: expand (stateful sugar into history form), autodiff."""

from .expand import copy_graph, expand_stateful

__all__ = ["copy_graph", "expand_stateful"]
