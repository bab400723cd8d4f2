"""Helpers shared by the CLI tests (tests/cli/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest

import dgen
from dgen import cli
from dgen.patch import build_patch

ROOT = Path(__file__).resolve().parents[2]
PATCHES = ROOT / "examples" / "patches"
BACKEND = cli.default_backend()
HAVE_CC = BACKEND == "c"
requires_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler on PATH")

FX_PATCH = """
import dgen
from dgen import Op

def build(g):
    gain = dgen.Parameter(g, 0.8, name="gain", min=0.0, max=2.0)
    x = g.input(0)
    fb, close = g.history()
    y = x * gain.node() + fb * 0.5
    close(g.delay(y, 37.25))
    g.output(0, y)
    g.output(1, g.n(Op.tanh, g.input(1) * 3.0))
"""


def patch_file(tmp_path, text, name="patch.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def reference_run(path, frames, inputs=None, params=None):
    g, _ = build_patch(path)
    for p in g.parameters:
        if params and p.name in params:
            p.value = params[p.name]
    return dgen.compile(g, backend=BACKEND, frame_count=frames).run(inputs)
