"""The system C compiler: find it, build shared libraries, cache them, load them.

The only module that runs processes or loads native code (with runtime/c_program.py as
its caller). A library is cached by the hash of (source, compiler identity, flags, CPU),
so `-march=native` builds never cross machines that share a home directory. Cache entries
are written to a temporary file and renamed into place, next to a SHA-256 of their bytes;
an entry whose bytes do not match is rebuilt, never loaded. Concurrent builds of one
source all succeed: each renames a complete file over the same name.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailable, DgenError
from ..render.prelude import mvec_available

BASE_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-std=c11")
# -ffp-contract=off: no fused multiply-add contraction, so float32 rounding matches the
# reference step for step (clang contracts by default). Never -ffast-math: NaN/inf matter.


class CompileError(DgenError, RuntimeError):
    """The C compiler rejected generated code (a dgen bug): the message has its output."""


@dataclass(frozen=True)
class Compiler:
    command: tuple[str, ...]  # e.g. ("gcc",) or ("ccache", "clang")
    identity: str  # what the cache key needs to know about it
    family: str = "other"  # "gcc" or "clang" (from the resolved executable names): flags differ


# Per compiler family. GCC: generated loops are vectorised by hand (vf types), and GCC's loop
# vectoriser spends seconds trying again on loops over frames of vectors (instances in
# lanes) for no gain, so it is off (the SLP vectoriser, which builds vf_splat, stays on).
# GCC also caps value numbering's alias queries per load at 100 (default 1000): walking the
# aliases of the memory accesses of a fused 200-node frame loop took half of its optimisation
# time (cold 200-node builds at 64 instances 475-513 -> 298-333 ms); the bench_c and training
# kernels compile to the same code.
FAMILY_FLAGS = {
    "gcc": ("-fno-tree-loop-vectorize", "--param=sccvn-max-alias-queries-per-access=100"),
    "clang": (),
    "other": (),
}


def _family(argv) -> str:
    names = [os.path.basename(os.path.realpath(shutil.which(a) or a)) for a in argv]
    if any("clang" in n for n in names):
        return "clang"
    return "gcc" if any("gcc" in n for n in names) else "other"


_lock = threading.Lock()
_compiler: Compiler | None = None
_loaded: dict[str, ctypes.CDLL] = {}


def find_compiler() -> Compiler:
    """`$CC` if set, else the first of cc, gcc, clang on PATH."""
    global _compiler
    if _compiler is None:
        env = os.environ.get("CC", "").strip()
        names = [shlex.split(env)] if env else [["cc"], ["gcc"], ["clang"]]
        for argv in names:
            path = shutil.which(argv[0])
            if path:
                st = os.stat(os.path.realpath(path))
                ident = f"{' '.join(argv)}|{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{_cpu()}"
                _compiler = Compiler((path, *argv[1:]), ident, _family(argv))
                break
        else:
            tried = f"$CC={env!r}" if env else "cc, gcc, clang"
            raise BackendUnavailable(
                f"the C backend needs a C compiler, and none was found on PATH "
                f"(tried {tried}); install gcc or clang, or set CC"
            )
    return _compiler


def _cpu() -> str:
    """The CPU model and feature flags (part of the key: -march=native code is CPU-specific)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read(1 << 16)
    except OSError:
        import platform

        return platform.machine() + platform.processor()
    keep = [ln for ln in text.splitlines() if ln.split(":")[0].strip() in ("model name", "flags", "Features")]
    return hashlib.sha256("\n".join(sorted(set(keep))).encode()).hexdigest()[:16]


def default_flags(mvec: bool | None = None, defines: dict | None = None) -> tuple[str, ...]:
    mvec = mvec_available() if mvec is None else mvec
    flags = list(BASE_FLAGS) + list(FAMILY_FLAGS[find_compiler().family])
    flags += [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    if mvec:
        flags.append("-DDGEN_USE_MVEC")
    return tuple(flags)


def _libs(flags) -> list[str]:
    return ["-lm"] + (["-lmvec"] if "-DDGEN_USE_MVEC" in flags else [])


def cache_dir() -> Path:
    """$DGEN_CACHE_DIR, else the user cache dir (platformdirs, XDG); a temp dir if unwritable."""
    env = os.environ.get("DGEN_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        try:
            import platformdirs

            path = Path(platformdirs.user_cache_dir("dgen", appauthor=False))
        except ImportError:
            path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgen"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path} is not writable")
        return path
    except OSError as e:
        fallback = _private_temp_dir()
        warnings.warn(f"dgen: cache dir {path} is unusable ({e}); using {fallback}", RuntimeWarning, stacklevel=3)
        return fallback


def _private_temp_dir() -> Path:
    """$TMPDIR/dgen-cache-<uid> if it is a real directory of ours that nobody else can write
    (we load shared libraries from it: a planted one would run as us), else a fresh mkdtemp."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = Path(tempfile.gettempdir()) / f"dgen-cache-{uid if uid is not None else 'user'}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o022 and (uid is None or st.st_uid == uid):
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="dgen-cache-"))


def cache_key(source: str, flags) -> str:
    cc = find_compiler()
    h = hashlib.sha256()
    for part in (cc.identity, " ".join(flags), source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _valid(lib: Path, digest: Path) -> bool:
    try:
        want = digest.read_text().strip()
        return hashlib.sha256(lib.read_bytes()).hexdigest() == want
    except OSError:
        return False


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def build(source: str, output: Path, flags, extra=(), shared=True) -> None:
    """Compile `source` to `output` (a shared library or an executable)."""
    cc = find_compiler()
    argv = [
        *cc.command,
        *flags,
        *(["-shared"] if shared else []),
        *extra,
        "-x",
        "c",
        "-",
        "-o",
        str(output),
        *_libs(flags),
    ]
    try:
        proc = subprocess.run(argv, input=source.encode(), capture_output=True, timeout=600)
    except OSError as e:
        raise BackendUnavailable(f"could not run the C compiler {cc.command[0]}: {e}") from e
    if proc.returncode != 0:
        tag = hashlib.sha256(source.encode()).hexdigest()[:12]
        saved = Path(tempfile.gettempdir()) / f"dgen-failed-{tag}.c"
        try:
            saved.write_text(source)
        except OSError:
            saved = "(not saved)"
        raise CompileError(
            f"C compiler failed (exit {proc.returncode}) on generated code saved at {saved}:\n"
            f"{' '.join(argv)}\n{proc.stderr.decode(errors='replace')[-4000:]}"
        )
    if not output.is_file() or output.stat().st_size == 0:  # e.g. CC=/bin/true: never cache or load that
        raise CompileError(
            f"the C compiler {cc.command[0]} exited 0 but wrote nothing to {output}; is $CC a C compiler?"
        )


def compile_library(source: str, flags=None, head: str | None = None) -> ctypes.CDLL:
    """The loaded library for `source`: from this process, from the disk cache, or built now.
    `head`: text that `source` contains verbatim and that every source shares (the prelude),
    compiled once as a precompiled header where the compiler is GCC."""
    flags = tuple(flags) if flags is not None else default_flags()
    key = cache_key(source, flags)
    with _lock:
        if key in _loaded:
            return _loaded[key]
    folder = cache_dir()
    lib, digest = folder / f"{key}.so", folder / f"{key}.sha256"
    loaded = None
    if _valid(lib, digest):
        try:
            loaded = ctypes.CDLL(str(lib))
        except OSError:  # bytes as recorded but not loadable: rebuild it
            loaded = None
    if loaded is None:
        header = _precompiled(head, flags, folder) if head and head in source else None
        if header is not None:  # the same text, read precompiled
            source, extra = source.replace(head, "", 1), ("-include", str(header))
        _build_entry(source, flags, lib, digest, extra if header is not None else ())
        loaded = ctypes.CDLL(str(lib))
    with _lock:
        return _loaded.setdefault(key, loaded)


# GCC precompiled header for the text every kernel starts with: parsing it (<immintrin.h> above
# all) was half of a cold 200-node build (0.3 of 0.65 s), loading it precompiled takes ~0.02 s.
# One per (compiler, flags, text) in the cache dir; the first build that wants it starts it in
# a thread (0.9 s, while that build reads the text as before) and later builds `-include` it.
# GCC ignores a .gch made for other options and reads the header's text: a stale one is slow,
# never wrong. The thread is not a daemon, so a process that exits early finishes it first.
_pch_started: set[str] = set()


def _precompiled(head: str, flags, folder: Path) -> Path | None:
    """The header to -include for `head` once its .gch is in `folder`; else None (and start it)."""
    if find_compiler().family != "gcc":
        return None
    name = f"head-{cache_key(head, flags)}.h"
    header, gch = folder / name, folder / f"{name}.gch"
    if header.is_file() and gch.is_file():
        return header
    with _lock:
        if name in _pch_started:  # building, or failed: this process reads the text
            return None
        _pch_started.add(name)
    threading.Thread(target=_build_pch, args=(head, flags, header, gch), name="dgen-pch").start()
    return None


def _build_pch(head: str, flags, header: Path, gch: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=gch.parent, prefix=".tmp-", suffix=".gch")
    os.close(fd)
    try:
        _atomic_write(header, head.encode())
        argv = [*find_compiler().command, *flags, "-x", "c-header", str(header), "-o", tmp]
        done = subprocess.run(argv, capture_output=True, timeout=600)
        if done.returncode == 0 and os.path.getsize(tmp) > 0:
            os.replace(tmp, gch)
    except (OSError, subprocess.SubprocessError):
        pass  # no precompiled header: builds keep reading the text
    finally:
        _unlink(tmp)


def _build_entry(source, flags, lib: Path, digest: Path, extra=()) -> None:
    """Build into a temp file, rename it over `lib`, then record its digest (both atomic)."""
    fd, tmp = tempfile.mkstemp(dir=lib.parent, prefix=".tmp-", suffix=".so")
    os.close(fd)
    try:
        build(source, Path(tmp), flags, extra)
        data = Path(tmp).read_bytes()
        os.replace(tmp, lib)
    finally:
        _unlink(tmp)
    _atomic_write(digest, hashlib.sha256(data).hexdigest().encode())
