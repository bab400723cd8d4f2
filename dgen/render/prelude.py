"""The C prelude that generated kernels start with (see prelude.h)."""

import os
import platform
import sys
from pathlib import Path

PRELUDE = (Path(__file__).with_name("prelude.h")).read_text()

# where distributions put the libmvec link-time library (-lmvec needs libmvec.so)
_MVEC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib")


def _glibc_version() -> tuple:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # 'glibc 2.36'
    except (AttributeError, ValueError, OSError):
        return ()
    return tuple(int(p) for p in version.split(".")[:2]) if name == "glibc" else ()


def mvec_available() -> bool:
    """True where prelude.h may be compiled with -DDGEN_USE_MVEC and linked with -lmvec:
    x86-64 Linux with glibc >= 2.35 (the first with every float variant the prelude calls)
    and libmvec.so in a standard location."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return False
    if _glibc_version() < (2, 35):
        return False
    return any(Path(d, "libmvec.so").exists() for d in _MVEC_DIRS)
