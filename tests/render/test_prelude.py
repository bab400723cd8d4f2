"""dgen/render/prelude.h: every vf_/sf_ function against C semantics computed by NumPy.

A generated C program applies each prelude function to a grid of float32 inputs (zeros,
infinities, NaN, denormals, huge values, domain edges, random bit patterns); NumPy computes
the reference in float64.  Exact functions must match bit for bit, transcendentals within
the ulp bounds below.  Configurations cover the native width with and without libmvec and
narrower / wider / generic builds.  `python tests/render/test_prelude.py` prints the error table
that docs/vector_math.md quotes.

Loaded by path (no `import dgen`), so it runs on a bare checkout.
"""

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PRELUDE_H = ROOT / "dgen" / "render" / "prelude.h"
CC = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (gcc, cc or clang) on PATH")

FLAGS = ["-O2", "-fno-math-errno", "-std=c11", "-Wall", "-Wextra", "-Werror"]
F32_MAX = float(np.finfo(np.float32).max)


def _load_prelude_py():
    spec = importlib.util.spec_from_file_location("dgen_prelude", PRELUDE_H.with_suffix(".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MVEC = _load_prelude_py().mvec_available()
X86 = platform.machine() in ("x86_64", "AMD64")


def _round_half_away(x):
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def _bool(v):
    return v.astype(np.float64)


# name: (arity, float64 reference, bound).  bound "exact": bitwise equal to the reference
# rounded to float32 (zero signs included); "value": equal as numbers (the +-0 tie of
# fmin/fmax is unspecified in C); a pair: max ulp error allowed for (the scalar C library,
# libmvec).  Measured maxima over all inputs (docs/vector_math.md): 2.17 and 3.97.
TRANSCENDENTAL = (3, 4)
FUNCS = {
    "sin": (1, np.sin, TRANSCENDENTAL),
    "cos": (1, np.cos, TRANSCENDENTAL),
    "tan": (1, np.tan, TRANSCENDENTAL),
    "asin": (1, np.arcsin, TRANSCENDENTAL),
    "acos": (1, np.arccos, TRANSCENDENTAL),
    "atan": (1, np.arctan, TRANSCENDENTAL),
    "exp": (1, np.exp, TRANSCENDENTAL),
    "log": (1, np.log, TRANSCENDENTAL),
    "log10": (1, np.log10, TRANSCENDENTAL),
    "tanh": (1, np.tanh, TRANSCENDENTAL),
    "pow": (2, np.power, TRANSCENDENTAL),
    "atan2": (2, np.arctan2, TRANSCENDENTAL),
    "sqrt": (1, np.sqrt, "exact"),
    "fmod": (2, np.fmod, "exact"),
    "floor": (1, np.floor, "exact"),
    "ceil": (1, np.ceil, "exact"),
    "round": (1, _round_half_away, "exact"),
    "abs": (1, np.abs, "exact"),
    "sign": (1, np.sign, "exact"),
    "min": (2, np.fmin, "value"),
    "max": (2, np.fmax, "value"),
    "gt": (2, lambda a, b: _bool(a > b), "exact"),
    "lt": (2, lambda a, b: _bool(a < b), "exact"),
    "gte": (2, lambda a, b: _bool(a >= b), "exact"),
    "lte": (2, lambda a, b: _bool(a <= b), "exact"),
    "eq": (2, lambda a, b: _bool(a == b), "exact"),
    "select": (3, lambda c, a, b: np.where(c > 0, a, b), "exact"),
}

# name: (extra flags, links libmvec).  -march=native picks the native width.
CONFIGS = {
    "native": (["-march=native"], False),
    "native-mvec": (["-march=native", "-DDGEN_USE_MVEC"], True),
    "w8-mvec": (["-march=native", "-DDGEN_W=8", "-DDGEN_USE_MVEC"], True),
    "w4-mvec": (["-march=native", "-DDGEN_W=4", "-DDGEN_USE_MVEC"], True),
    # chunked mvec calls and generic floor; -Wno-psabi: GCC notes an ABI change for vectors wider
    # than the ISA (harmless, all static inline) and only the command line silences it
    "w32-mvec": (["-march=native", "-DDGEN_W=32", "-DDGEN_USE_MVEC", "-Wno-psabi"], True),
    "baseline": ([], False),  # the compiler's default ISA (SSE2 on x86-64): generic vector code
}


# ---- inputs -----------------------------------------------------------------------------


def _specials():
    f32 = np.float32
    tiny, big = np.finfo(f32).smallest_subnormal, np.finfo(f32).max
    base = [
        0.0,
        np.inf,
        np.nan,
        1.0,
        0.5,
        1.5,
        2.5,
        3.5,
        0.49999997,
        0.50000006,
        2.0,
        3.0,
        10.0,
        0.1,
        1e-7,
        1e-20,
        1e-30,
        1e10,
        1e20,
        1e30,
        1e38,
        big,
        tiny,
        3 * tiny,
        1.1754942e-38,
        1.17549435e-38,
        8388607.5,
        8388608.0,
        8388609.0,
        16777216.0,
        2.0**31,
        2.0**31 - 128,
        2.0**32,
        100.0,
        1000.0,
        np.pi,
        np.pi / 2,
        np.pi / 4,
        2 * np.pi,
        88.72,
        88.73,
        87.3,
        103.9,
        104.0,
        0.9999999,
        1.0000001,
        0.33333334,
        1e-3,
        7.0,
        12345.678,
        3.1415925,
        3.1415927,
        1.5707963,
        1.5707964,
    ]
    v = np.array(base, dtype=f32)
    return np.unique(np.concatenate([v, -v]))  # NaNs stay (unique keeps one)


def make_inputs(seed=1234, scale=1):
    """Three float32 arrays (x, y, z) of equal length: arguments for every function."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    sp = _specials()
    px, py = (g.ravel() for g in np.meshgrid(sp, sp))  # every pair of special values
    n = 20000 * scale

    def loguniform(m, lo, hi):
        return (10.0 ** rng.uniform(lo, hi, m) * rng.choice([-1, 1], m)).astype(f32)

    def blocks():
        bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(f32)  # anything, NaN payloads too
        halves = (rng.integers(-4000, 4000, n) / 2).astype(f32)
        k = rng.integers(-300, 300, n)
        toward = np.where(rng.random(n) < 0.5, np.inf, -np.inf).astype(f32)
        near_pi2 = np.nextafter((k * np.pi / 2).astype(f32), toward)
        return [
            bits,
            rng.uniform(-10, 10, n).astype(f32),
            rng.uniform(-1.01, 1.01, n).astype(f32),
            loguniform(n, -45, 38.5),
            halves,
            near_pi2,
            rng.uniform(-100, 100, n).astype(f32),
        ]

    xs, ys = blocks(), blocks()
    # pow-friendly pairs: moderate bases with fractional and integer exponents, bases near 1
    base = loguniform(n, -3, 3)
    expo = rng.uniform(-30, 30, n).astype(f32)
    expo[::2] = np.round(expo[::2])
    near1 = (1 + rng.uniform(-1e-3, 1e-3, n)).astype(f32)
    x = np.concatenate([px] + xs + [base, near1])
    y = np.concatenate([py] + ys + [expo, rng.uniform(-2e4, 2e4, n).astype(f32)])
    z = np.roll(x, 7)
    pad = (-len(x)) % 64
    out = [np.concatenate([a, np.zeros(pad, f32)]) for a in (x, y, z)]
    assert all(a.dtype == f32 for a in out)
    return out


# ---- the C program ----------------------------------------------------------------------


def c_source():
    runs = []
    for name, (arity, _, _) in FUNCS.items():
        args = ", ".join(f"vf_load({a} + i)" for a in "xyz"[:arity])
        sargs = ", ".join(f"{a}[i]" for a in "xyz"[:arity])
        runs.append(
            f"    for (i = 0; i < n; i += DGEN_W) vf_store(o + i, vf_{name}({args}));\n"
            f"    o += n;\n    for (i = 0; i < n; i++) o[i] = sf_{name}({sargs});\n    o += n;"
        )
    return f"""#include "{PRELUDE_H}"
#include <stdio.h>
#include <stdlib.h>
/* usage: prog in out; in = int32 n, then x, y, z (n floats each); out = vf then sf per function */
int main(int argc, char **argv) {{
    if (argc != 3) return 2;
    FILE *f = fopen(argv[1], "rb");
    int32_t n;
    if (!f || fread(&n, sizeof n, 1, f) != 1 || n % DGEN_W) return 3;
    float *x = malloc(3 * (size_t)n * sizeof *x), *y = x + n, *z = y + n;
    float *out = malloc({2 * len(FUNCS)} * (size_t)n * sizeof *out), *o = out;
    if (!x || !out || fread(x, sizeof *x, 3 * (size_t)n, f) != 3 * (size_t)n) return 4;
    fclose(f);
    int32_t i;
{chr(10).join(runs)}
    f = fopen(argv[2], "wb");
    if (!f || fwrite(out, sizeof *out, (size_t)(o - out), f) != (size_t)(o - out)) return 5;
    fclose(f);
    free(x);
    free(out);
    return 0;
}}
"""


def build(tmp, name, flags, mvec, extra=()):
    src = Path(tmp) / f"{name}.c"
    src.write_text(c_source())
    exe = Path(tmp) / name
    libs = ["-lmvec", "-lm"] if mvec else ["-lm"]
    cmd = [CC, *FLAGS, *flags, *extra, str(src), "-o", str(exe), *libs]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr, f"{' '.join(cmd)}\n{res.stderr}"
    return exe


def run_program(exe, tmp, inputs, env=None):
    inp, outp = Path(tmp) / f"{exe.name}.in", Path(tmp) / f"{exe.name}.out"
    with open(inp, "wb") as f:
        np.array([len(inputs[0])], np.int32).tofile(f)
        for a in inputs:
            a.astype(np.float32).tofile(f)
    res = subprocess.run([str(exe), str(inp), str(outp)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, f"{exe.name} exited {res.returncode}\n{res.stderr}"
    assert not res.stderr, res.stderr
    out = np.fromfile(outp, np.float32).reshape(len(FUNCS), 2, len(inputs[0]))
    return {name: (out[k, 0], out[k, 1]) for k, name in enumerate(FUNCS)}


# ---- comparison -------------------------------------------------------------------------


def reference(name, inputs):
    arity, fn, _ = FUNCS[name]
    with np.errstate(all="ignore"):
        return fn(*(a.astype(np.float64) for a in inputs[:arity]))


def ulp_error(out, ref):
    """Per-element error of float32 `out` in float32 ulps of the float64 `ref` (0 where both NaN,
    inf where only one is).  An infinite result counts as 2**128 against a finite reference."""
    o = out.astype(np.float64)
    err = np.zeros(len(o))
    nan_o, nan_r = np.isnan(o), np.isnan(ref)
    err[nan_o != nan_r] = np.inf
    inf_r = np.isinf(ref) & ~nan_o
    err[inf_r & (o != ref)] = np.inf
    fin = ~nan_o & ~nan_r & ~np.isinf(ref)
    # past float32's range: 2**128 is where float32 would continue after FLT_MAX
    o = np.where(np.isinf(o), np.copysign(2.0**128, o), o)[fin]
    r = np.clip(ref[fin], -(2.0**128), 2.0**128)
    ulp = np.ldexp(1.0, np.maximum(np.frexp(np.minimum(np.abs(r), F32_MAX))[1] - 24, -149))
    e = np.abs(o - r) / ulp
    e[(np.abs(r) == 2.0**128) & (o != r)] = np.inf  # a true overflow must give inf
    err[fin] = e
    return err


def mismatches(name, out, ref):
    """Indices where an exact function differs from the reference."""
    kind = FUNCS[name][2]
    r32 = ref.astype(np.float32)
    nan_o, nan_r = np.isnan(out), np.isnan(r32)
    if kind == "exact":
        same = out.view(np.uint32) == r32.view(np.uint32)
    else:
        same = out == r32
    return np.flatnonzero((nan_o != nan_r) | (~nan_o & ~nan_r & ~same))


def _describe(name, inputs, idx, out, ref):
    arity = FUNCS[name][0]
    rows = [
        f"  {name}({', '.join(repr(float(a[i])) for a in inputs[:arity])}) = {float(out[i])!r}, "
        f"expected {float(ref[i])!r}"
        for i in idx[:5]
    ]
    return "\n".join(rows)


def check_config(results, inputs, mvec_linked, strict=True):
    """Assert every function in one configuration; returns {name: (vf max ulp, sf max ulp)}."""
    failures, table = [], {}
    for name, (vec, sca) in results.items():
        ref, bound = reference(name, inputs), FUNCS[name][2]
        # vf and sf agree bit for bit unless vf calls libmvec
        if isinstance(bound, str) or not mvec_linked:
            diff = np.flatnonzero((vec.view(np.uint32) != sca.view(np.uint32)) & ~(np.isnan(vec) & np.isnan(sca)))
            if len(diff):
                failures.append(f"vf_{name} != sf_{name}:\n" + _describe(name, inputs, diff, vec, sca))
        for prefix, out in (("vf", vec), ("sf", sca)):
            if isinstance(bound, str):
                bad = mismatches(name, out, ref)
                if len(bad):
                    failures.append(f"{prefix}_{name} not exact:\n" + _describe(name, inputs, bad, out, ref))
                continue
            err = ulp_error(out, ref)
            limit = bound[1] if (prefix == "vf" and mvec_linked) else bound[0]
            table.setdefault(name, {})[prefix] = float(err.max())
            if not err.max() <= limit:
                worst = np.argsort(-err)[:5]
                failures.append(
                    f"{prefix}_{name}: max error {err.max():.3g} ulp > {limit}:\n"
                    + _describe(name, inputs, worst, out, ref)
                )
    if strict:
        assert not failures, "\n".join(failures)
    elif failures:
        print("\n".join(failures))
    return table


# ---- tests ------------------------------------------------------------------------------


def _configs():
    for name, (flags, mvec) in CONFIGS.items():
        marks = []
        if mvec and not MVEC:
            marks.append(pytest.mark.skip(reason="libmvec needs x86-64 Linux with glibc >= 2.35"))
        if "-march=native" in flags and not X86 and "W" in name:
            marks.append(pytest.mark.skip(reason="width override configs are for x86-64"))
        yield pytest.param(name, marks=marks)


@pytest.fixture(scope="module")
def inputs():
    return make_inputs()


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """Build every runnable configuration once, two at a time."""
    tmp = tmp_path_factory.mktemp("prelude")
    todo = {n: c for n, c in CONFIGS.items() if MVEC or not c[1]}
    with ThreadPoolExecutor(2) as pool:
        futures = {n: pool.submit(build, tmp, n.replace("-", "_"), f, m) for n, (f, m) in todo.items()}
    return tmp, {n: fut.result() for n, fut in futures.items()}


@pytest.mark.parametrize("config", list(_configs()))
def test_functions_match_c_semantics(config, programs, inputs):
    tmp, exes = programs
    results = run_program(exes[config], tmp, inputs)
    check_config(results, inputs, CONFIGS[config][1])


WARNING_FLAGS = [
    ["-O3", "-march=native"],
    ["-O3", "-march=native", "-DDGEN_USE_MVEC"],
    ["-O0", "-DDGEN_USE_MVEC"],
    ["-O3", "-march=native", "-DDGEN_W=8"],
    ["-O3", "-march=native", "-DDGEN_W=4"],
    ["-O3", "-DDGEN_W=16", "-Wno-psabi"],  # wider than the ISA: generic code (see w32-mvec)
    ["-O3", "-march=native", "-fsanitize=address,undefined"],
]


def test_compiles_warning_free(tmp_path):
    src = tmp_path / "w.c"
    src.write_text(
        f'#include "{PRELUDE_H}"\n'
        "float use(const float *p, float *q) {\n"
        "    vf v = vf_sin(vf_load(p)); vf_store(q, vf_select(vf_gt(v, vf_splat(0.5f)), v, vf_floor(v)));\n"
        "    return sf_pow(p[0], 2.0f);\n}\n"
    )
    base = [CC, "-std=c11", "-fno-math-errno", "-Wall", "-Wextra", "-Werror", "-c", str(src), "-o", os.devnull]

    def compile_one(flags):
        res = subprocess.run([*base, *flags], capture_output=True, text=True)
        return flags, res.returncode, res.stderr

    flag_sets = [f for f in WARNING_FLAGS if X86 or not any("DGEN_W" in a for a in f)]
    with ThreadPoolExecutor(2) as pool:
        for flags, rc, err in pool.map(compile_one, flag_sets):
            assert rc == 0 and not err, f"{flags}:\n{err}"


def _sanitizers_link(tmp_path):
    src = tmp_path / "probe.c"
    src.write_text("int main(void) { return 0; }\n")
    res = subprocess.run(
        [CC, "-fsanitize=address,undefined", str(src), "-o", str(tmp_path / "probe")], capture_output=True
    )
    return res.returncode == 0


@pytest.mark.skipif(not MVEC, reason="libmvec needs x86-64 Linux with glibc >= 2.35")
def test_sanitizers_clean(tmp_path):
    if not _sanitizers_link(tmp_path):
        pytest.skip(f"{CC} cannot link -fsanitize=address,undefined (runtime not installed)")
    exe = build(
        tmp_path,
        "san",
        ["-march=native", "-DDGEN_USE_MVEC", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
        True,
    )
    small = [a[:4096] for a in make_inputs(scale=0)]
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    check_config(run_program(exe, tmp_path, small, env), small, True)


def test_ftz_macros(tmp_path):
    src = tmp_path / "ftz.c"
    src.write_text(
        f'#include "{PRELUDE_H}"\n#include <stdio.h>\n'
        "volatile float a = 1e-30f, b = 1e-10f; float in[1] = {1e-40f}, out[3];\n"
        "int main(void) {\n"
        "    { DGEN_FTZ_BEGIN out[0] = a * b; out[1] = in[0] * 2.0f; DGEN_FTZ_END }\n"
        "    out[2] = a * b;\n"
        '    printf("%a %a %a\\n", out[0], out[1], out[2]);\n    return 0;\n}\n'
    )
    exe = tmp_path / "ftz"
    res = subprocess.run(
        [CC, *FLAGS, "-O3", "-march=native", str(src), "-o", str(exe), "-lm"], capture_output=True, text=True
    )
    assert res.returncode == 0 and not res.stderr, res.stderr
    vals = [
        float.fromhex(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    ]
    if X86 or platform.machine() in ("aarch64", "arm64"):
        assert vals[:2] == [0.0, 0.0], "FTZ/DAZ not in effect inside the block"
    assert vals[2] != 0.0, "denormal mode not restored after DGEN_FTZ_END"


def test_prelude_py():
    mod = _load_prelude_py()
    assert mod.PRELUDE == PRELUDE_H.read_text()
    assert isinstance(mod.mvec_available(), bool)


if __name__ == "__main__":  # print the accuracy table quoted in docs/vector_math.md
    import tempfile

    data = make_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in ("native", "native-mvec", "w8-mvec", "w4-mvec"):
            flags, mvec = CONFIGS[cfg]
            if mvec and not MVEC:
                continue
            exe = build(tmp, cfg.replace("-", "_"), flags, mvec)
            table = check_config(run_program(exe, tmp, data), data, mvec, strict=False)
            print(
                f"{cfg} ({len(data[0])} inputs): "
                + ", ".join(f"{k} {v['vf']:.2f}/{v['sf']:.2f}" for k, v in table.items()),
                file=sys.stdout,
            )
