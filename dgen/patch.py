"""Patch files: plain Python files that define `build(g)`, as the `dgen` command reads them.

    # tone.py
    from dgen import Op

    def build(g):
        phase = g.n(Op.phasor(g.alloc()), 220.0, 0.0)
        g.output(0, g.n(Op.sin, phase * 6.283185307179586) * 0.5)

`build(g)` receives an empty `dgen.Graph` and adds nodes to it. For rendering it adds
outputs (channel i becomes WAV channel i) and may read `g.input(i)` (channel i of the
`--input` file). It may instead return a node, or a list of nodes: when the graph then has
no outputs, they become output channels 0, 1, ... For `dgen train` it creates
`dgen.Parameter`s and returns the one signal node to fit.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np

from .audio import load_audio
from .errors import DgenError, RunInputError
from .graph import Graph, Node


class PatchError(DgenError, ValueError):
    """A patch file that cannot be loaded or does not follow the convention above."""


_counter = itertools.count()


def load_patch(path):
    """Import the patch file at `path` as a fresh module (nothing cached between loads)."""
    path = Path(path)
    if not path.is_file():
        raise PatchError(f"{path}: no such patch file")
    name = f"dgen_patch_{next(_counter)}_{''.join(c if c.isalnum() else '_' for c in path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PatchError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(name, None)
        raise
    if not callable(getattr(module, "build", None)):
        raise PatchError(f"{path}: a patch file must define a function build(g)")
    return module


def _as_nodes(returned, path) -> list[Node]:
    if returned is None:
        return []
    items = list(returned) if isinstance(returned, (list, tuple)) else [returned]
    for x in items:
        if not isinstance(x, Node):
            raise PatchError(f"{path}: build(g) returned {x!r}; expected a node, a list of nodes, or None")
    return items


def build_patch(path, sample_rate: float = 44100, outputs: bool = True) -> tuple[Graph, list[Node]]:
    """(graph, nodes build returned). With `outputs`, returned nodes become output channels
    0, 1, ... when build added no outputs itself; a graph left with no outputs is an error."""
    module = load_patch(path)
    g = Graph(sample_rate=sample_rate)
    returned = _as_nodes(module.build(g), path)
    for x in returned:
        if x.graph is not g:
            raise PatchError(f"{path}: build(g) returned node {x.id} of another graph")
    if outputs:
        if not g.outputs():
            for ch, x in enumerate(returned):
                g.output(ch, x)
        if not g.outputs():
            raise PatchError(f"{path}: build(g) added no outputs (call g.output(0, node) or return the node)")
    return g, returned


def c_identifier(text: str) -> str:
    """A C identifier made from `text` (for exported library names)."""
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in text) or "patch"
    return f"p_{out}" if out[0].isdigit() else out


def read_input(path, sample_rate, channels: int):
    """(channels, frames) from an audio file: rate must match; extra channels are dropped,
    a mono file feeds every channel."""
    if not Path(path).is_file():
        raise RunInputError(f"{path}: no such input file")
    x, _ = load_audio(path, sample_rate)
    if x.shape[0] == 1 and channels > 1:
        x = np.repeat(x, channels, axis=0)
    if x.shape[0] < channels:
        raise RunInputError(f"{path} has {x.shape[0]} channel(s); the patch reads {channels}")
    return x[:channels]
