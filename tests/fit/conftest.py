"""tests/fit: makes _builders.py importable here and in spawned workers (pytest runs with
--import-mode=importlib, which does not put test folders on sys.path; spawn children inherit it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
