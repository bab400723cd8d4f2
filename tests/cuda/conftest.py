"""tests/cuda: the CUDA backend. Makes the shared helpers importable (pytest runs with
--import-mode=importlib): this folder's _cudasupport and the C tests' graph builders, which
these tests reuse so that every backend is checked on the same graphs."""

import sys
from pathlib import Path

here = Path(__file__).parent
for path in (here, here.parent / "c"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
