"""Shared helpers for the reliability tests: which backends run here, and running a
short Python script in a fresh interpreter (for tests that change the process's
environment: compiler, cache directory)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import pytest

import dgen
from dgen.errors import BackendUnavailable


def _have_cc():
    try:
        from dgen.runtime.cc import find_compiler

        find_compiler()
        return True, ""
    except BackendUnavailable as e:
        return False, str(e)


@functools.lru_cache(maxsize=1)
def _have_cuda():
    g = dgen.Graph()
    g.output(0, g.constant(1.0))
    try:
        dgen.compile(g, backend="cuda", frame_count=4)
        return True, ""
    except (BackendUnavailable, ImportError, NotImplementedError) as e:
        return False, str(e)


HAVE_CC, WHY_NO_CC = _have_cc()
requires_cc = pytest.mark.skipif(not HAVE_CC, reason=f"no C compiler: {WHY_NO_CC}")


def compiled_backends():
    """pytest params: every compiled backend, CUDA with its marker (skipped without a GPU)."""
    cuda_ok, why = _have_cuda() if os.environ.get("DGEN_TEST_CUDA", "1") != "0" else (False, "disabled")
    return [
        pytest.param("c", marks=requires_cc),
        pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not cuda_ok, reason=f"no CUDA: {why}")]),
    ]


def run_script(code: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python; env entries set to None are removed."""
    full = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full, timeout=timeout
    )
