"""Progress bars: tqdm when installed and the output is a terminal, silent otherwise."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


class _Bar:
    def __init__(self, inner):
        self.inner = inner

    def update(self, n=1, **postfix):
        if self.inner is not None:
            if postfix:
                self.inner.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            self.inner.update(n)


@contextmanager
def progress_bar(total: int, desc: str = "", enable=None):
    """enable: True/False, or None = on when stderr is a terminal and DGEN_PROGRESS != 0."""
    if enable is None:
        enable = sys.stderr.isatty() and os.environ.get("DGEN_PROGRESS", "1") != "0"
    inner = None
    if enable:
        try:
            from tqdm import tqdm

            inner = tqdm(total=total, desc=desc, leave=False)
        except ImportError:
            inner = None
    try:
        yield _Bar(inner)
    finally:
        if inner is not None:
            inner.close()
