"""The rest of the bad-input catalogue (issue 9; tests/core/test_errors.py covers the graph
errors): run() arguments, instances, training that diverges, compile options, a missing
or broken C compiler, corrupt cache entries and an unusable cache directory.

Each case asserts the dgen exception type and that the message names the culprit (the
parameter and step, the channel counts, the compiler, the path): never a crash, a hang or
a silent NaN. Environment-changing cases run in a fresh interpreter.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
import threading
import warnings

import numpy as np
import pytest
from _support import HAVE_CC, compiled_backends, requires_cc, run_script

import dgen
from dgen import Op

BACKENDS = ["reference", *compiled_backends()]


def sine_of_input(backend, channels=1, instances=1, frame_count=16):
    g = dgen.Graph()
    total = g.input(0)
    for c in range(1, channels):
        total = total + g.input(c)
    g.output(0, g.n(Op.sin, total))
    return dgen.compile(g, backend=backend, frame_count=frame_count, instances=instances)


# ------------------------------------------------------------------ run(): dtype
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "bad",
    [
        np.ones((1, 16), complex),
        np.ones((1, 16), object),
        np.array([["a"] * 16]),
        np.array([[b"a"] * 16]),
        np.array([[None] * 16]),
        np.array([["2020-01-01"] * 16], "datetime64[D]"),
    ],
    ids=["complex", "object", "str", "bytes", "none", "datetime"],
)
def test_run_rejects_non_real_dtypes(backend, bad):
    prog = sine_of_input(backend)
    with pytest.raises(dgen.RunInputError, match=re.escape(str(bad.dtype))):
        prog.run(bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_accepts_ints_and_bools(backend):
    prog = sine_of_input(backend)
    for x in (np.ones((1, 16), np.int16), np.ones((1, 16), bool), np.ones((1, 16), np.uint8), [[1] * 16]):
        np.testing.assert_allclose(prog.run(x), np.sin(np.ones((1, 16))), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_rejects_ragged_lists(backend):
    prog = sine_of_input(backend, channels=2)
    with pytest.raises(dgen.RunInputError, match="rectangular"):
        prog.run([[0.0, 1.0, 2.0], [0.0]])


@pytest.mark.parametrize("backend", compiled_backends())
def test_values_beyond_float32_are_an_error_not_inf(backend):
    """Compiled backends run float32: 1e300 would silently become inf (then NaN downstream)."""
    prog = sine_of_input(backend)
    x = np.zeros((1, 16))
    x[0, 5] = -1e300
    with pytest.raises(dgen.RunInputError) as info:
        prog.run(x)
    msg = str(info.value)
    assert "-1e+300" in msg and "frame 5" in msg and "channel 0" in msg and "float32" in msg, msg
    # NaN and inf inputs are the caller's choice: they propagate as IEEE says, with no error
    x[0, 5] = np.inf
    assert np.isnan(prog.run(x)[0, 5])
    # the reference in float64 takes it as it is
    np.testing.assert_allclose(sine_of_input("reference").run(np.full((1, 16), 1e300)), np.sin(1e300))


# ------------------------------------------------------------------ run(): shape
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "shape,want",
    [
        ((1, 16), "reads 2 input channel(s), inputs have 1"),
        ((3, 16), "reads 2 input channel(s), inputs have 3"),
        ((16,), "expected (2, frames)"),
        ((1, 2, 16, 1), "expected (2, frames)"),
        ((), "expected (2, frames)"),
    ],
)
def test_run_wrong_channels_or_ndim(backend, shape, want):
    prog = sine_of_input(backend, channels=2)
    with pytest.raises(dgen.RunInputError) as info:
        prog.run(np.ones(shape))
    msg = str(info.value)
    assert want in msg and str(shape) in msg, msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_without_inputs_on_a_graph_that_reads_some(backend):
    prog = sine_of_input(backend, channels=3)
    with pytest.raises(dgen.RunInputError, match=r"reads 3 input channel\(s\)"):
        prog.run()


# ------------------------------------------------------------------ run(): frames
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("frames", [0, -1, -(10**9), 1.5, 2.0, "4", True, np.float32(4.0), [4]])
def test_run_bad_frames(backend, frames):
    prog = sine_of_input(backend)
    with pytest.raises(dgen.RunInputError) as info:
        prog.run(np.ones((1, 4)), frames=frames)
    assert "frames must be a positive int" in str(info.value) and repr(frames) in str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_frames_mismatch_and_numpy_ints(backend):
    prog = sine_of_input(backend)
    with pytest.raises(dgen.RunInputError, match="inputs have 4 frames but frames=5"):
        prog.run(np.ones((1, 4)), frames=5)
    with pytest.raises(dgen.RunInputError, match="0 frames"):
        prog.run(np.ones((1, 0)))
    assert prog.run(np.ones((1, 4)), frames=np.int64(4)).shape == (1, 4)


@pytest.mark.parametrize(
    "what,value",
    [
        ("frame_count", 0),
        ("frame_count", -3),
        ("frame_count", 2.5),
        ("frame_count", True),
        ("instances", 0),
        ("instances", 1.5),
        ("instances", False),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_bad_frame_count_or_instances(backend, what, value):
    g = dgen.Graph()
    g.output(0, g.constant(1.0))
    with pytest.raises(dgen.RunInputError, match=f"{what} must be a positive int, got {value!r}"):
        dgen.compile(g, backend=backend, **{"frame_count": 8, what: value})


# ------------------------------------------------------------------ instances
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "shape,hint",
    [
        ((3, 1, 8), "runs 2 instance(s), inputs have 3"),
        ((1, 1, 8), "runs 2 instance(s), inputs have 1"),
        ((2, 2, 8), "reads 1 input channel(s), inputs have 2"),
        ((1, 8), "expected (2, 1, frames)"),
        ((8,), "expected (2, 1, frames)"),
    ],
)
def test_instances_wrong_leading_axis(backend, shape, hint):
    prog = sine_of_input(backend, instances=2)
    with pytest.raises(dgen.RunInputError) as info:
        prog.run(np.ones(shape))
    assert hint in str(info.value), str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_value_array_of_the_wrong_length(backend):
    g = dgen.Graph()
    gain = dgen.Parameter(g, value=[1.0, 2.0, 3.0], name="gain")
    g.output(0, g.input(0) * gain.node())
    for instances in (1, 2, 4):
        prog = dgen.compile(g, backend=backend, frame_count=8, instances=instances)
        x = np.ones((1, 8)) if instances == 1 else np.ones((instances, 1, 8))
        with pytest.raises(dgen.RunInputError) as info:
            prog.run(x)
        assert (
            "'gain'" in str(info.value)
            and "3 values" in str(info.value)
            and f"{instances} instances" in str(info.value)
        )
    gain.value = [1.0, 2.0]
    np.testing.assert_array_equal(
        dgen.compile(g, backend=backend, frame_count=8, instances=2).run(np.ones((2, 1, 8)))[:, 0, 0], [1.0, 2.0]
    )


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("backend", compiled_backends())
def test_parameter_beyond_float32(backend):
    g = dgen.Graph()
    big = dgen.Parameter(g, value=1e39, name="big")
    g.output(0, big.node() * 0.5)
    prog = dgen.compile(g, backend=backend, frame_count=8)
    with pytest.raises(dgen.RunInputError, match="parameter 'big': value 1e\\+39 is beyond the float32 range"):
        prog.run()


# ------------------------------------------------------------------ training that diverges
def diverging(backend, kind, optimizer, instances=1):
    """A graph whose loss explodes under a huge learning rate: pow or exp of a parameter."""
    g = dgen.Graph()
    a = dgen.Parameter(g, value=1.0 if instances == 1 else [1.0] * instances, name="slope")
    ramp = g.input(0)
    y = g.n(Op.pow, a.node(), 4.0) if kind == "pow" else g.n(Op.exp, a.node() * ramp * 3.0)
    loss = y * ramp if kind == "pow" else (y - 1e6) * (y - 1e6)
    g.output(0, loss)
    prog = dgen.compile(g, backend=backend, frame_count=32, backwards=True, instances=instances)
    ctx = dgen.TrainingContext([a], optimizer, loss, prog)
    x = np.linspace(0, 1, 32)[None]
    return ctx, (x if instances == 1 else np.stack([x] * instances))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["pow", "exp"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("instances", [1, 3])
def test_divergence_stops_with_parameter_and_step(backend, kind, opt, instances):
    optimizer = dgen.SGD(lr=1e6) if opt == "sgd" else dgen.Adam(lr=1e100)
    ctx, x = diverging(backend, kind, optimizer, instances)
    with pytest.raises(dgen.TrainingError) as info:
        ctx.train(200, inputs=x)
    msg = str(info.value)
    assert f"step {ctx.steps}" in msg and "'slope'" in msg or "slope=" in msg, msg
    assert ctx.steps < 200
    # nothing non-finite was recorded: training stopped at the first NaN/inf
    for row in ctx.history:
        assert np.all(np.isfinite(row["loss"])) and np.all(np.isfinite(row["slope"])), row
    assert np.all(np.isfinite(np.atleast_1d(ctx.parameters[0].value)))


def test_loss_nan_with_finite_gradient_stops():
    """inf * 0 makes the mean loss NaN while the gradient is still finite: stop anyway."""
    g = dgen.Graph()
    a = dgen.Parameter(g, value=1e80, name="a")
    y = g.n(Op.pow, a.node(), 4.0)  # inf in float64
    loss = y * g.input(0)  # inf * 0 at frame 0 -> NaN mean
    g.output(0, loss)
    prog = dgen.compile(g, backend="reference", frame_count=4, backwards=True)
    ctx = dgen.TrainingContext([a], dgen.SGD(lr=1e-300), loss, prog)
    ctx.zero_grad()
    assert math.isnan(ctx.forward_backward(np.array([[0.0, 1e-300, 0.0, 0.0]])))
    with pytest.raises(dgen.TrainingError, match=r"the loss is nan \(not finite\) at step 1; parameter values: a="):
        ctx.step()


def test_bad_parameter_and_optimizer_settings():
    g = dgen.Graph()
    with pytest.raises(dgen.TrainingError, match="parameter 'q': value nan is not finite"):
        dgen.Parameter(g, math.nan, name="q")
    with pytest.raises(dgen.TrainingError, match="parameter 'r': min 2 > max 0"):
        dgen.Parameter(g, 1.0, name="r", min=2, max=0)
    p = dgen.Parameter(g, 1.0, name="p")
    with pytest.raises(dgen.TrainingError, match="parameter 'p': value inf"):
        p.value = math.inf
    for bad in (0.0, -1.0, math.nan, math.inf):
        for cls in (dgen.SGD, dgen.Adam):
            with pytest.raises(ValueError, match="learning rate must be finite and > 0"):
                cls(bad)


def test_training_context_rejects_parameters_and_loss_of_another_graph():
    """Cell ids of another graph alias this graph's cells: q would silently get p's gradient."""
    g = dgen.Graph()
    p = dgen.Parameter(g, 1.0, name="p")
    g.output(0, p.node() * p.node())
    prog = dgen.compile(g, backend="reference", frame_count=4, backwards=True)
    other = dgen.Graph()
    q = dgen.Parameter(other, 5.0, name="q")
    with pytest.raises(dgen.ForeignNodeError, match="parameter 'q' belongs to another graph"):
        dgen.TrainingContext([q], dgen.SGD(0.1), g.outputs()[0], prog)
    with pytest.raises(dgen.ForeignNodeError, match=r"the loss, node 0 \(param\), belongs to another graph"):
        dgen.TrainingContext([p], dgen.SGD(0.1), q.node(), prog)
    with pytest.raises(dgen.GraphError, match="backwards=True"):
        dgen.TrainingContext([p], dgen.SGD(0.1), p.node(), dgen.compile(g, backend="reference", frame_count=4))


# ------------------------------------------------------------------ compile options, graph limits
def test_compile_options_and_backends():
    g = dgen.Graph()
    g.output(0, g.constant(1.0))
    with pytest.raises(dgen.BackendUnavailable, match="unknown backend 'metal'"):
        dgen.compile(g, backend="metal")
    with pytest.raises(TypeError, match=r"unknown option\(s\) for the reference backend: \['dtyp'\]"):
        dgen.compile(g, backend="reference", dtyp=np.float32)
    with pytest.raises(ValueError, match="float32 or float64, not int32"):
        dgen.compile(g, backend="reference", dtype=np.int32)
    try:  # CUDA: a program, or BackendUnavailable with the reason; never an ImportError
        dgen.compile(g, backend="cuda", frame_count=4)
    except dgen.BackendUnavailable as e:
        assert "CUDA" in str(e) or "cuda" in str(e)
    if HAVE_CC:
        with pytest.raises(ValueError, match="float32"):
            dgen.compile(g, backend="c", dtype=np.float64)
        with pytest.raises(TypeError, match="unknown option"):
            dgen.compile(g, backend="c", tiel=64)


def test_cell_sizes_are_bounded():
    """Compiled code indexes a cell with a C int: larger cells would overflow it."""
    g = dgen.Graph()
    assert g.alloc(np.int64(4)).size == 4
    for bad in (0, -1, True, 2.0, 2**31):
        with pytest.raises(dgen.GraphError, match="alloc: size must be an int in"):
            g.alloc(bad)
    for bad in (math.nan, -1.0, 1e12):
        with pytest.raises(dgen.GraphError, match="delay: max_delay must be finite"):
            g.delay(g.input(0), 1.0, max_delay=bad)


# ------------------------------------------------------------------ the C compiler
NO_CC_SCRIPT = """
import dgen
g = dgen.Graph()
g.output(0, g.n(dgen.Op.sin, g.input(0)))
try:
    dgen.compile(g, backend="c", frame_count=8)
    print("COMPILED")
except dgen.BackendUnavailable as e:
    print("UNAVAILABLE", e)
print("REFERENCE", dgen.compile(g, backend="reference", frame_count=4).run([[0.0, 1.0, 2.0, 3.0]]).shape)
"""


@pytest.mark.parametrize(
    "env,tried",
    [
        ({"CC": "/nonexistent/cc"}, "$CC='/nonexistent/cc'"),
        ({"CC": None, "PATH": "/nonexistent"}, "cc, gcc, clang"),
    ],
)
def test_missing_compiler(tmp_path, env, tried):
    res = run_script(NO_CC_SCRIPT, {**env, "DGEN_CACHE_DIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("UNAVAILABLE") and "needs a C compiler" in first and tried in first, res.stdout
    assert "REFERENCE (1, 4)" in res.stdout  # the reference backend needs no compiler


@pytest.mark.skipif(not os.path.exists("/bin/true") or not os.path.exists("/bin/false"), reason="no /bin/true")
def test_compiler_that_is_not_a_compiler(tmp_path):
    script = NO_CC_SCRIPT.replace("dgen.BackendUnavailable", "dgen.DgenError")
    for cc, want in (("/bin/true", "exited 0 but wrote nothing"), ("/bin/false", "C compiler failed (exit 1)")):
        res = run_script(
            script.replace('print("UNAVAILABLE", e)', "print(type(e).__name__, e)"),
            {"CC": cc, "DGEN_CACHE_DIR": str(tmp_path)},
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("CompileError") and want in res.stdout, res.stdout
        assert not list(tmp_path.glob("*.so")), "a failed build must leave no cache entry"


# ------------------------------------------------------------------ the cache
CACHE_SCRIPT = """
import json, sys
import numpy as np
import dgen
out = {}
for k in range(4):
    g = dgen.Graph()
    x = g.input(0)
    g.output(0, g.biquad(g.n(dgen.Op.tanh, x * (1.5 + k)), 800.0 + 100 * k, 0.7, 1.0, 0.0))
    prog = dgen.compile(g, backend="c", frame_count=64)
    out[k] = prog.run(np.sin(np.arange(64) * 0.3)[None]).ravel().tolist()
print(json.dumps(out))
"""


def _entries(folder):
    return sorted(folder.glob("*.so"))


def _valid(lib):
    digest = lib.with_suffix(".sha256")
    return digest.exists() and hashlib.sha256(lib.read_bytes()).hexdigest() == digest.read_text().strip()


@requires_cc
def test_corrupt_cache_entries_are_rebuilt(tmp_path):
    env = {"DGEN_CACHE_DIR": str(tmp_path)}
    first = run_script(CACHE_SCRIPT, env)
    assert first.returncode == 0, first.stderr
    libs = _entries(tmp_path)
    assert len(libs) == 4 and all(_valid(lib) for lib in libs)
    good = {lib: lib.read_bytes() for lib in libs}
    # four kinds of damage, one per entry
    data = bytearray(good[libs[0]])
    libs[0].write_bytes(bytes(data[: len(data) // 2]))  # truncated
    data = bytearray(good[libs[1]])
    data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)  # garbled, same size
    libs[1].write_bytes(bytes(data))
    libs[2].with_suffix(".sha256").write_text("0" * 64)  # garbled digest
    libs[3].write_bytes(good[libs[0]])  # another graph's library
    second = run_script(CACHE_SCRIPT, env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)  # same output: rebuilt, not loaded
    for lib in libs:
        assert _valid(lib) and lib.read_bytes() == good[lib], lib.name


def _fresh_graph():
    """A graph no other test compiles (its own cache key)."""
    g = dgen.Graph()
    g.output(0, g.n(Op.sin, g.input(0)) * float(np.random.default_rng().uniform(1, 2)))
    return g


@requires_cc
def test_unwritable_cache_dir_falls_back_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DGEN_CACHE_DIR", str(blocker / "sub"))  # root ignores permission bits; this fails for all
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prog = dgen.compile(_fresh_graph(), backend="c", frame_count=8)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any(str(blocker / "sub") in m and "unusable" in m and str(tmp_path / "tmp") in m for m in msgs), msgs
    assert prog.run(np.ones((1, 8))).shape == (1, 8)
    fallback = tmp_path / "tmp" / f"dgen-cache-{os.getuid()}"
    assert _entries(fallback) and stat.S_IMODE(fallback.stat().st_mode) == 0o700


@requires_cc
@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX only")
def test_fallback_dir_writable_by_others_is_not_used(tmp_path, monkeypatch):
    """Loading a library from a directory others can write would run their code: a shared
    /tmp/dgen-cache-<uid> made by someone else (or left world-writable) is skipped."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("DGEN_CACHE_DIR", str(blocker / "sub"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    shared = tmp_path / "tmp" / f"dgen-cache-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dgen.compile(_fresh_graph(), backend="c", frame_count=8).run(np.ones((1, 8)))
    assert not _entries(shared)
    used = [p for p in (tmp_path / "tmp").iterdir() if p != shared and _entries(p)]
    assert len(used) == 1 and stat.S_IMODE(used[0].stat().st_mode) == 0o700
    assert any(str(used[0]) in str(w.message) for w in caught)


# ------------------------------------------------------------------ no hang on interrupt-like misuse
@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_leave_the_program_usable(backend):
    """A rejected call must not leave the program locked or its state changed."""
    prog = sine_of_input(backend)
    y = prog.run(np.ones((1, 16)))
    for bad in (np.ones((2, 16)), np.ones((1, 16), complex)):
        with pytest.raises(dgen.RunInputError):
            prog.run(bad)
    done = threading.Event()
    t = threading.Thread(target=lambda: (prog.run(np.ones((1, 16))), done.set()))
    t.start()
    t.join(30)
    assert done.is_set()
    np.testing.assert_array_equal(prog.run(np.ones((1, 16))), y)
