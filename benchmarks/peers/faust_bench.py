"""Faust peer benchmarks for dgen.

Compiles the patches in ``benchmarks/peers/faust/*.dsp`` with ``faust -lang c`` (scalar) or
``faust -lang c -vec -vs <block>`` (vec), links them with a small C harness and measures
throughput inside C with ``clock_gettime``. The C compiler flags are dgen's:
``gcc -O3 -march=native -fno-math-errno`` (no ``-ffast-math``, no flush-to-zero).

    faust_throughput("sos", "vec", block=256, seconds=1.0, instances=64)  -> samples/s
    faust_render("phasor_sin", 4096)                                       -> np.float32 array

``samples`` counts frames x instances. Builds are cached in ``$TMPDIR/dgen_peers_faust/<key>``
where the key hashes the .dsp text, the mode, the block size, the harness source, the flags and
the faust/gcc versions.

Run ``python benchmarks/peers/faust_bench.py`` for the table of every patch x mode x instances.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FAUST_DIR = Path(__file__).resolve().parent / "faust"
PATCHES = ("phasor_sin", "sine_bank", "sos", "karplus", "fm_biquad")
MODES = ("scalar", "vec")
SAMPLE_RATE = 44100
CC = os.environ.get("CC", "gcc")
CFLAGS = ("-O3", "-march=native", "-fno-math-errno")  # the same flags dgen's C backend uses

# The harness #includes the faust-generated dsp.c (class name mydsp, FAUSTFLOAT float).
#   harness bench <instances> <block> <seconds> <warmup_seconds>
#       prints: samples_per_second blocks elapsed_seconds checksum
#   harness render <frames> <block>
#       writes <frames> float32 samples of output 0 (one instance) to stdout
HARNESS_C = r"""
#define FAUSTFLOAT float
#include <faust/gui/CInterface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* faust's C backend calls int min()/max() (e.g. for min(1000, int) and in -lv 1 loops) and
   expects the architecture file to provide them */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
#include "dsp.c"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float* zeros(size_t n) {
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    float* p = (float*)aligned_alloc(64, bytes ? bytes : 64);
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

typedef struct { mydsp* dsp; float** in; float** out; } Inst;

static Inst make(int block) {
    Inst s;
    s.dsp = newmydsp();
    initmydsp(s.dsp, SAMPLE_RATE);
    int ni = getNumInputsmydsp(s.dsp), no = getNumOutputsmydsp(s.dsp);
    s.in = (float**)malloc(sizeof(float*) * (ni > 0 ? ni : 1));
    s.out = (float**)malloc(sizeof(float*) * (no > 0 ? no : 1));
    for (int c = 0; c < ni; c++) s.in[c] = zeros(block);   /* silent inputs (patches have none) */
    for (int c = 0; c < no; c++) s.out[c] = zeros(block);  /* every instance its own buffers */
    return s;
}

int main(int argc, char** argv) {
    if (argc == 4 && strcmp(argv[1], "render") == 0) {
        long frames = atol(argv[2]);
        int block = atoi(argv[3]);
        Inst s = make(block);
        for (long done = 0; done < frames; done += block) {
            int n = (int)((frames - done) < block ? (frames - done) : block);
            computemydsp(s.dsp, n, s.in, s.out);
            fwrite(s.out[0], sizeof(float), (size_t)n, stdout);
        }
        return 0;
    }
    if (argc != 6 || strcmp(argv[1], "bench") != 0) {
        fprintf(stderr, "usage: %s bench INSTANCES BLOCK SECONDS WARMUP | render FRAMES BLOCK\n", argv[0]);
        return 2;
    }
    int instances = atoi(argv[2]);
    int block = atoi(argv[3]);
    double seconds = atof(argv[4]), warmup = atof(argv[5]);
    Inst* s = (Inst*)malloc(sizeof(Inst) * (size_t)instances);
    for (int i = 0; i < instances; i++) s[i] = make(block);
    volatile float checksum = 0.0f;  /* reads every output block: keeps the work observable */

    /* warm-up; also calibrates how many rounds to run between clock reads (~0.5 ms apart) */
    long rounds = 0;
    double t0 = now(), t = t0;
    do {
        for (int i = 0; i < instances; i++) {
            computemydsp(s[i].dsp, block, s[i].in, s[i].out);
            checksum += s[i].out[0][block - 1];
        }
        rounds++;
    } while ((t = now()) - t0 < warmup || rounds < 2);
    long every = (long)(5e-4 / ((t - t0) / (double)rounds));
    if (every < 1) every = 1;

    long blocks = 0;
    t0 = now();
    for (;;) {
        for (long r = 0; r < every; r++) {
            for (int i = 0; i < instances; i++) {
                computemydsp(s[i].dsp, block, s[i].in, s[i].out);
                checksum += s[i].out[0][block - 1];
            }
        }
        blocks += every;
        t = now();
        if (t - t0 >= seconds) break;
    }
    double elapsed = t - t0;
    double samples = (double)blocks * (double)block * (double)instances;
    printf("%.6e %ld %.6f %g\n", samples / elapsed, blocks, elapsed, (double)checksum);
    return 0;
}
"""


def faust_available() -> bool:
    """True when the faust compiler, its C headers and a C compiler are installed."""
    return (
        shutil.which("faust") is not None
        and shutil.which(CC) is not None
        and Path("/usr/include/faust/gui/CInterface.h").exists()
    )


def patch_path(patch: str) -> Path:
    """A patch name from PATCHES (or any .dsp path) to the .dsp file."""
    p = Path(patch)
    if p.suffix == ".dsp" and p.exists():
        return p.resolve()
    p = FAUST_DIR / f"{patch}.dsp"
    if not p.exists():
        raise ValueError(f"unknown faust patch {patch!r}: no {p}")
    return p


@functools.cache
def _tool_versions() -> str:
    fv = subprocess.run(["faust", "--version"], capture_output=True, text=True).stdout.splitlines()
    gv = subprocess.run([CC, "--version"], capture_output=True, text=True).stdout.splitlines()
    return (fv[0] if fv else "") + "|" + (gv[0] if gv else "")


def faust_args(mode: str, block: int) -> list[str]:
    if mode == "scalar":
        return ["-lang", "c"]
    if mode == "vec":
        return ["-lang", "c", "-vec", "-vs", str(int(block))]
    raise ValueError(f"mode must be 'scalar' or 'vec', not {mode!r}")


def cache_root() -> Path:
    return Path(os.environ.get("DGEN_PEERS_CACHE", Path(tempfile.gettempdir()) / "dgen_peers_faust"))


def build(patch: str, mode: str, block: int = 256) -> Path:
    """Compile patch in mode to a harness executable; cached by content. Returns its path."""
    if not faust_available():
        raise RuntimeError("faust (apt-get install faust) and gcc are needed for the Faust peers")
    dsp = patch_path(patch)
    fargs = faust_args(mode, block)
    key = hashlib.sha256(
        "\0".join(
            [
                dsp.read_text(),
                " ".join(fargs),
                HARNESS_C,
                CC,
                " ".join(CFLAGS),
                _tool_versions(),
            ]
        ).encode()
    ).hexdigest()[:20]
    out_dir = cache_root() / f"{dsp.stem}-{mode}-{block}-{key}"
    exe = out_dir / "harness"
    if exe.exists():
        return exe
    cache_root().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dsp.stem}-", dir=cache_root()))
    try:
        # faust resolves imports relative to the .dsp's folder and its own library path
        subprocess.run(
            ["faust", *fargs, "-I", str(dsp.parent), str(dsp), "-o", str(tmp / "dsp.c")],
            check=True,
            capture_output=True,
            text=True,
        )
        (tmp / "harness.c").write_text(HARNESS_C)
        subprocess.run(
            [
                CC,
                *CFLAGS,
                f"-DSAMPLE_RATE={SAMPLE_RATE}",
                "-I",
                str(tmp),
                str(tmp / "harness.c"),
                "-o",
                str(tmp / "harness"),
                "-lm",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        try:
            tmp.rename(out_dir)  # atomic publish; another process may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"building {dsp.name} ({mode}) failed:\n{e.cmd}\n{e.stdout}\n{e.stderr}") from e
    return exe


def faust_throughput(patch: str, mode: str, block: int = 256, seconds: float = 1.0, instances: int = 1) -> float:
    """Samples per second (frames x instances) of the Faust-compiled patch.

    `instances` independent DSP instances (each init at 44100 with its own output buffer) are
    computed one after another on blocks of `block` frames, for ~`seconds` of wall time after a
    warm-up of min(0.25, seconds/4) s; timed with clock_gettime inside C.
    """
    exe = build(patch, mode, block)
    warm = min(0.25, seconds / 4)
    r = subprocess.run(
        [str(exe), "bench", str(int(instances)), str(int(block)), repr(float(seconds)), repr(float(warm))],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(r.stdout.split()[0])


def faust_render(patch: str, frames: int, mode: str = "scalar", block: int = 256) -> np.ndarray:
    """The first `frames` output samples (float32) of one instance of the patch at 44100 Hz."""
    exe = build(patch, mode, block)
    r = subprocess.run([str(exe), "render", str(int(frames)), str(int(block))], check=True, capture_output=True)
    y = np.frombuffer(r.stdout, dtype=np.float32)
    assert y.size == frames, (y.size, frames)
    return y.copy()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="measured wall time per cell")
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--patches", nargs="+", default=list(PATCHES))
    args = ap.parse_args(argv)
    if not faust_available():
        sys.exit("faust_bench: faust is not installed (apt-get install -y faust)")
    for p in args.patches:  # build everything first so compile time stays out of the table
        for m in MODES:
            build(p, m, args.block)
    cols = [(m, n) for m in MODES for n in args.instances]
    print(
        f"Faust peers: Msamples/s (frames x instances), block {args.block}, "
        f"{args.seconds:g} s per cell, {' '.join(CFLAGS)}"
    )
    print(f"{'patch':<12}" + "".join(f"{f'{m} x{n}':>14}" for m, n in cols))
    for p in args.patches:
        row = [faust_throughput(p, m, args.block, args.seconds, n) for m, n in cols]
        print(f"{p:<12}" + "".join(f"{v / 1e6:>14.1f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
