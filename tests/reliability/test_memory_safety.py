"""Memory safety by construction (ops.md): memory_read/memory_write indices are floor()ed and
wrapped into their cell, a non-finite index gives slot 0, so no graph reaches memory
outside its cell.

Random and extreme indices (NaN, +-inf, +-1e30, beyond int32, negative, non-integer,
denormal) go into memory_write/memory_read on every backend; each result must equal an
independent model of the rule (Python ints, exact), the float32 reference bit for bit,
and the cells around the buffer must keep their sentinel values. For C the same kernels
(forward, and the backward kernel with memory_accum/memory_take) are also built into an
executable under AddressSanitizer + UBSan (float-cast-overflow included), with every array
allocated at its exact size, so a stray access anywhere aborts the run.
"""

from __future__ import annotations

import math
import struct
import subprocess

import numpy as np
import pytest
from _support import HAVE_CC, compiled_backends, requires_cc

import dgen
from dgen import Op

F32MAX = float(np.finfo(np.float32).max)
EXTREME = [
    math.nan,
    math.inf,
    -math.inf,
    1e30,
    -1e30,
    1e38,
    -1e38,
    F32MAX,
    -F32MAX,
    3e9,
    -3e9,
    2147483648.0,
    -2147483648.0,
    2147483520.0,
    -2147483520.0,
    -2147483904.0,
    16777217.0,
    1e10 + 0.5,
    -0.5,
    -1.0,
    -1e-30,
    1e-40,
    -1e-40,
    -0.0,
    0.0,
    0.999999,
    1.5,
    -1.5,
    63.0,
    64.0,
    65.0,
    -64.0,
    -65.0,
    999.0,
    1000.0,
    -1000.0,
    -1001.0,
    7.0,
    -7.0,
    2.0,
    3.0,
]
SIZES = (1, 2, 3, 7, 64, 1000)
GUARD = 7.0  # sentinel in the cells before and after the buffer


def index_stream(seed: int, n: int = 181) -> np.ndarray:
    """The extreme values plus random ones of every magnitude, shuffled; `n` is odd (SIMD tails)."""
    rng = np.random.default_rng(seed)
    rand = np.concatenate(
        [
            rng.uniform(-2000, 2000, 40),
            rng.normal(0, 5, 30),
            rng.choice([-1, 1], 40) * 10.0 ** rng.uniform(-40, 38.5, 40),
        ]
    )
    x = np.concatenate([EXTREME, rand])
    x = np.resize(rng.permutation(x), n)
    return x


def model_slot(x: float, size: int) -> int:
    """ops.md: j = floor(index) wrapped into [0, size); non-finite -> 0 (Python ints: exact)."""
    return 0 if not math.isfinite(x) else int(math.floor(x)) % size


def model(widx, ridx, vals, size, init):
    mem, out = [init] * size, []
    for w, r, v in zip(widx, ridx, vals):
        mem[model_slot(float(w), size)] = float(v)
        out.append(mem[model_slot(float(r), size)])
    return np.array(out)


def memory_graph(size: int, read_only: bool = False):
    """out0 = memory_read(buf)[in1] after memory_write(buf)[in0] := in2; guard cells around buf."""
    g = dgen.Graph()
    lo = g.alloc(3, init=GUARD)
    buf = g.alloc(size, init=0.25)
    hi = g.alloc(3, init=GUARD)
    wi, ri, v = g.input(0), g.input(1), g.input(2)
    if read_only:
        g.output(0, g.n(Op.memory_read(buf), ri))
        g.output(1, g.n(Op.max, wi, v))  # reads the other channels too
    else:
        w = g.n(Op.memory_write(buf), wi, v)
        g.output(0, g.seq(w, g.n(Op.memory_read(buf), ri)))
    return g, (lo, buf, hi)


def inputs_for(seed, instances, frames=181):
    rng = np.random.default_rng(seed + 1000)
    per = [
        np.stack(
            [index_stream(seed + 10 * b, frames), index_stream(seed + 10 * b + 5, frames), rng.uniform(-1, 1, frames)]
        )
        for b in range(instances)
    ]
    return per[0] if instances == 1 else np.stack(per)


def daz(x):
    """What the C backend sees: it flushes denormals to zero (FTZ/DAZ, docs/reliability.md), so a
    denormal index such as -1e-40 is -0.0 there (slot 0) and -1e-40 in the reference (slot
    size - 1)."""
    x = np.array(x, np.float32)
    x[np.abs(x) < np.finfo(np.float32).tiny] *= 0
    return x


def expected(x, size, dtype, read_only=False):
    x = np.asarray(x, dtype)
    xs = x[None] if x.ndim == 2 else x
    out = []
    for inst in xs:
        if read_only:
            out.append(np.full(inst.shape[-1], 0.25))
        else:
            out.append(model(inst[0], inst[1], inst[2], size, 0.25))
    out = np.array(out)[:, None, :]
    return out[0] if x.ndim == 2 else out


def check_guards(prog, cells):
    lo, buf, hi = cells
    offs = prog.plan.layout.offsets
    mem = prog.mem.get() if hasattr(prog.mem, "get") else np.asarray(prog.mem)  # CuPy on the CUDA backend
    for c in (lo, hi):
        assert np.all(mem[offs[c.id] : offs[c.id] + c.size] == GUARD), f"guard cell {c.id} was overwritten"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reference_matches_model(size, dtype):
    g, cells = memory_graph(size)
    prog = dgen.compile(g, backend="reference", frame_count=181, dtype=dtype)
    x = inputs_for(size, 1)
    y = prog.run(x)
    np.testing.assert_array_equal(y, expected(x, size, dtype))
    check_guards(prog, cells)


@pytest.mark.parametrize("backend", compiled_backends())
@pytest.mark.parametrize("instances", [1, 5])
@pytest.mark.parametrize("size", SIZES)
def test_compiled_matches_reference(backend, instances, size):
    for read_only in (False, True):
        g, cells = memory_graph(size, read_only)
        prog = dgen.compile(g, backend=backend, frame_count=181, instances=instances)
        ref = dgen.compile(g, backend="reference", frame_count=181, instances=instances, dtype=np.float32)
        x = inputs_for(size + instances, instances)
        y, yr = prog.run(x)[..., :1, :], ref.run(daz(x))[..., :1, :]
        np.testing.assert_array_equal(y, yr)  # pure data movement: bit-exact
        np.testing.assert_array_equal(y, expected(daz(x), size, np.float32, read_only))
        check_guards(prog, cells)
        # streaming: state (the buffer) carries over; chunks of odd sizes give the same result
        prog.reset()
        parts = [prog.run(x[..., a:b], frames=b - a) for a, b in ((0, 1), (1, 50), (50, 181))]
        check_guards(prog, cells)
        np.testing.assert_array_equal(np.concatenate(parts, axis=-1)[..., :1, :], yr)


def gradient_graph(size):
    """A parameter written to memory at extreme indices and read back: the backward pass runs
    memory_take / memory_accum at the same (wrapped) slots."""
    g = dgen.Graph()
    p = dgen.Parameter(g, value=0.5, name="p")
    buf = g.alloc(size)
    w = g.n(Op.memory_write(buf), g.input(0), p.node() * g.input(2))
    r = g.seq(w, g.n(Op.memory_read(buf), g.input(1)))
    loss = (r - 0.3) * (r - 0.3)
    g.output(0, loss)
    return g, p, loss


@requires_cc
@pytest.mark.parametrize("instances", [1, 3])
@pytest.mark.parametrize("size", [1, 7, 64])
def test_gradients_through_extreme_indices(size, instances):
    results = []
    x = daz(inputs_for(size, instances))  # float32 values, as C sees them, for every backend
    for backend, kw in (("c", {}), ("reference", {"dtype": np.float32}), ("reference", {})):
        g, p, loss = gradient_graph(size)
        prog = dgen.compile(g, backend=backend, frame_count=181, instances=instances, backwards=True, **kw)
        value, grads = prog.forward_backward(loss, x)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(grads[p]))
        results.append((np.asarray(value), np.asarray(grads[p])))
    (lc, gc), (lr, gr), (l64, g64) = results
    np.testing.assert_allclose(lc, lr, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gc, gr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gr, g64, rtol=1e-4, atol=1e-5)  # float32 vs float64 reference


# ------------------------------------------------------------------ AddressSanitizer
MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
static float *take(FILE *f, size_t n) {
    float *p = malloc(n * sizeof(float));
    if (!p || fread(p, sizeof(float), n, f) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return p;
}
static float *padded(const float *x, size_t rows, int B, int Bp) {
    float *p = calloc(rows * (size_t)Bp, sizeof(float));
    for (size_t r = 0; r < rows; r++) for (int b = 0; b < B; b++) p[r * Bp + b] = x[r * B + b];
    return p;
}
static void put(FILE *f, const float *p, size_t rows, int B, int Bp) {
    for (size_t r = 0; r < rows; r++) fwrite(p + r * Bp, sizeof(float), (size_t)B, f);
}
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    int hdr[2];
    if (!in || !out || fread(hdr, sizeof(int), 2, in) != 2) return 2;
    const int frames = hdr[0], B = hdr[1], W = dgen_width();
    const int Bp = LANES ? (B + W - 1) / W * W : 1, groups = LANES ? Bp / W : 1;
    float *m0 = take(in, (size_t)MEMSIZE * B);
    float *mem = padded(m0, MEMSIZE, B, Bp);
    float *arr[NARRAYS + 1];
READS
CALLS
WRITES
    put(out, mem, MEMSIZE, B, Bp);
    fclose(out);
    free(m0); free(mem);
    for (int k = 0; k < NARRAYS; k++) free(arr[k]);
    fclose(in);
    return 0;
}
"""


def harness_source(csource, mem_size):
    """main() for `csource`: reads memory and external signals, runs every stage, writes outputs."""
    array_of, reads, calls, outs = {}, [], [], []
    for step in csource.steps:
        assert step.kind == "stage", "the harness runs compiled stages only"
        st = step.stage
        ptrs = []
        for s in st.slots:
            key = (s.kind, s.key) if s.kind in ("input", "tape") else ("node", s.node)
            if key not in array_of:
                k = array_of[key] = len(array_of)
                if s.kind == "out":
                    reads.append(f"    arr[{k}] = malloc((size_t)frames * Bp * sizeof(float));")
                    outs.append((s.node, k))
                else:
                    reads.append(
                        f"    {{ float *t = take(in, (size_t)frames * B); "
                        f"arr[{k}] = padded(t, (size_t)frames, B, Bp); free(t); }}"
                    )
            ptrs.append(f"arr[{array_of[key]}]")
        calls.append(f"    {{ float *ext[] = {{{', '.join(ptrs) or 'NULL'}}}; {st.name}(mem, ext, frames, groups); }}")
    writes = [f"    put(out, arr[{k}], (size_t)frames, B, Bp);" for _, k in outs]
    main = (
        MAIN.replace("LANES", "1" if csource.lanes else "0")
        .replace("MEMSIZE", str(mem_size))
        .replace("NARRAYS", str(len(array_of)))
        .replace("READS", "\n".join(reads))
        .replace("CALLS", "\n".join(calls))
        .replace("WRITES", "\n".join(writes))
    )
    externals = [key for key in array_of if key[0] != "node"]
    return csource.source + main, externals, [n for n, _ in outs]


def asan_build(tmp_path, source, name):
    from dgen.runtime import cc

    flags = [f for f in cc.default_flags() if f not in ("-O3", "-fPIC")]
    flags += [
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined,float-cast-overflow",
        "-fno-sanitize-recover=all",
    ]
    exe = tmp_path / name
    try:
        cc.build(source, exe, flags, shared=False)
    except cc.CompileError as e:
        if "asan" in str(e).lower() or "sanitize" in str(e).lower():
            pytest.skip(f"the compiler cannot link sanitizers: {str(e)[-300:]}")
        raise
    return exe


def asan_run(exe, tmp_path, mem, externals_data, out_nodes, frames, B, mem_size):
    """mem (M, B); externals_data in harness order, each (frames, B). Returns outputs, final mem."""
    blob = struct.pack("ii", frames, B) + np.ascontiguousarray(mem, np.float32).tobytes()
    blob += b"".join(np.ascontiguousarray(x, np.float32).tobytes() for x in externals_data)
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(blob)
    env = {
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
        "UBSAN_OPTIONS": "print_stacktrace=1",
        "PATH": "/usr/bin:/bin",
    }
    res = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "runtime error" not in res.stderr, f"sanitizer report:\n{res.stderr[-4000:]}"
    data = np.frombuffer(dst.read_bytes(), np.float32)
    n = frames * B
    outs = {node: data[k * n : (k + 1) * n].reshape(frames, B) for k, node in enumerate(out_nodes)}
    return outs, data[len(out_nodes) * n :].reshape(mem_size, B)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
@pytest.mark.parametrize("instances", [1, 5])
def test_forward_under_address_sanitizer(tmp_path, instances):
    """The kernel with the buffer as the only cell (memory == the cell): any access outside it
    is outside the allocation and aborts under ASan."""
    for size in (1, 3, 64):
        g = dgen.Graph()
        buf = g.alloc(size, init=0.25)
        w = g.n(Op.memory_write(buf), g.input(0), g.input(2))
        g.output(0, g.seq(w, g.n(Op.memory_read(buf), g.input(1))))
        prog = dgen.compile(g, backend="c", frame_count=181, instances=instances)
        csource = prog.kernel.build(prog.lanes).csource
        M = prog.plan.layout.size
        assert M == size
        source, externals, out_nodes = harness_source(csource, M)
        exe = asan_build(tmp_path, source, f"mem{size}_{instances}")
        x = inputs_for(size, instances)
        xs = x[None] if instances == 1 else x  # (B, C, N)
        ext = [xs[:, key, :].T for kind, key in externals]
        mem0 = np.full((M, instances), 0.25, np.float32)
        outs, mem = asan_run(exe, tmp_path, mem0, ext, out_nodes, 181, instances, M)
        want = prog.run(x)
        want = want[None] if instances == 1 else want
        out_id = prog.graph.outputs()[0].id
        np.testing.assert_array_equal(outs[out_id].T, want[:, 0])
        np.testing.assert_array_equal(mem, np.asarray(prog.mem).reshape(M, -1)[:, :instances])


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
def test_backward_under_address_sanitizer(tmp_path):
    """The adjoint kernel (memory_take / memory_accum at wrapped slots) under ASan."""
    size, instances, frames = 7, 3, 181
    g, p, loss = gradient_graph(size)
    prog = dgen.compile(g, backend="c", frame_count=frames, instances=instances, backwards=True)
    x = inputs_for(size, instances)
    prog.forward_backward(loss, x)  # builds and runs the kernels
    grad = prog.gradient(loss)
    fwd = prog.forward
    prog.reset()
    fwd._sync_parameters()
    values = grad.forward_kernel.execute(fwd.mem_view(), frames, fwd.channel_arrays(np.asarray(x, np.float32)))
    tape = {i: np.asarray(values[i]) for i in grad.adjoint.tape_ids}
    bkernel = grad.backward_kernel
    csource = bkernel.build(True).csource
    M = grad.backward_plan.layout.size
    source, externals, out_nodes = harness_source(csource, M)
    exe = asan_build(tmp_path, source, "backward")
    ext = []
    for kind, key in externals:
        assert kind == "tape", (kind, key)
        ext.append(tape[key])
    mem0 = np.zeros((M, instances), np.float32)
    _, mem = asan_run(exe, tmp_path, mem0, ext, out_nodes, frames, instances, M)
    bmem = np.zeros((M, instances), np.float32)
    bkernel.execute(bmem, frames, [], tape)
    np.testing.assert_array_equal(mem, bmem)
