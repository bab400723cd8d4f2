"""Threads (docs/reliability.md, "Thread safety").

- Separate programs (compiled from one graph or several, in one thread or many) run in
  separate threads at once and give exactly the results of a serial run: each has its own
  state memory; the compiled C library they share keeps no state of its own.
- One program has one state memory, so it is NOT safe to run from two threads at once.
  A second `run`/`reset`/`forward_backward` while one is in progress raises
  `dgen.ConcurrentRunError` (a non-blocking lock: it never waits, never deadlocks) and
  leaves the running call and the state intact.
(8 processes compiling one graph at once: tests/c/test_c_build.py.)
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _support import compiled_backends

import dgen
from dgen import Op

BACKENDS = ["reference", *compiled_backends()]


def patch(seed=0, gain=None):
    """Phasor -> sine -> biquad with feedback through a delay: stateful everywhere."""
    g = dgen.Graph()
    x = g.input(0)
    ph = g.n(Op.phasor(g.alloc()), 110.0 + 10 * seed, 0.0)
    tone = g.n(Op.sin, ph * 6.283185307179586) + 0.1 * x
    prev, close = g.history()
    y = g.biquad(tone + 0.5 * prev, 900.0, 0.8, 1.0, 0.0)
    close(g.delay(y, 37.5, 64) * 0.9)
    if gain is not None:  # a training graph: output 0 is the loss
        p = dgen.Parameter(g, gain, name="gain")
        loss = g.n(Op.mse, y * p.node(), x)
        g.output(0, loss)
        return g, loss
    g.output(0, y)
    g.output(1, ph)
    return g


def signal(frames, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (1, frames))


def serial(backend, g, x, chunks):
    prog = dgen.compile(g, backend=backend, frame_count=256)
    out, at = [], 0
    for n in chunks:
        out.append(prog.run(x[:, at : at + n], frames=n))
        at += n
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_separate_programs_in_threads(backend):
    """4 threads, each compiling (at the same time) and streaming its own program."""
    chunks = [64, 1, 255, 64, 128, 1000]
    frames = sum(chunks)
    graphs = [patch(seed % 2) for seed in range(4)]  # two pairs of identical graphs: shared cache keys
    inputs = [signal(frames, seed) for seed in range(4)]
    want = [serial(backend, g, x, chunks) for g, x in zip(graphs, inputs)]
    start = threading.Barrier(4)

    def work(k):
        start.wait()
        return serial(backend, graphs[k], inputs[k], chunks)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(work, range(4)))
    for w, o in zip(want, got):
        np.testing.assert_array_equal(o, w)


@pytest.mark.parametrize("backend", compiled_backends())
def test_one_graph_many_programs_in_threads(backend):
    """Programs of one graph share one loaded library; running them at once must not mix state."""
    g = patch()
    progs = [dgen.compile(g, backend=backend, frame_count=512, instances=b) for b in (1, 3, 1, 5)]
    xs = [
        signal(4096, k) if p.instances == 1 else np.stack([signal(4096, k + i) for i in range(p.instances)])
        for k, p in enumerate(progs)
    ]
    want = []
    for p, x in zip(progs, xs):
        want.append(np.concatenate([p.run(x[..., a : a + 512], frames=512) for a in range(0, 4096, 512)], axis=-1))
        p.reset()

    def work(k):
        p, x = progs[k], xs[k]
        return np.concatenate([p.run(x[..., a : a + 512], frames=512) for a in range(0, 4096, 512)], axis=-1)

    for _ in range(3):
        for p in progs:
            p.reset()
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(work, range(4)))
        for w, o in zip(want, got):
            np.testing.assert_array_equal(o, w)


def busy_program(backend):
    """A program whose run takes long enough (>= ~50 ms) to be caught in the middle."""
    g = patch()
    return dgen.compile(g, backend=backend, frame_count=256)


def wait_busy(prog, thread, timeout=10.0):
    """Until `thread`'s call holds prog; False when the thread ended without being seen busy
    (the call was faster than the polling: the caller skips)."""
    t0 = time.monotonic()
    while not prog._busy.locked():
        if not thread.is_alive():
            return False
        if time.monotonic() - t0 > timeout:
            raise AssertionError("the run never started")
        time.sleep(0.0005)
    return True


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_run_of_one_program_raises(backend):
    prog = busy_program(backend)
    frames = 400_000 if backend != "reference" else 10_000
    x = signal(frames)
    ref = busy_program(backend)
    want = ref.run(x, frames=frames)
    result, errors = {}, []

    def long_run():
        result["y"] = prog.run(x, frames=frames)

    t = threading.Thread(target=long_run)
    t.start()
    try:
        if not wait_busy(prog, t):
            pytest.skip("the long run finished before it was seen running (machine too fast)")
        for call in (lambda: prog.run(x[:, :64], frames=64), prog.reset):
            try:
                call()
            except dgen.ConcurrentRunError as e:
                errors.append(str(e))
    finally:
        t.join(120)
    if len(errors) < 2 and "y" in result:
        pytest.skip("the long run finished before the second call (machine too fast)")
    assert len(errors) == 2
    assert "already running in another thread" in errors[0] and "run()" in errors[0]
    assert "reset()" in errors[1]
    np.testing.assert_array_equal(result["y"], want)  # the running call was not disturbed
    # and the program works normally afterwards, state carried over as if nothing happened
    np.testing.assert_array_equal(prog.run(x[:, :100], frames=100), ref.run(x[:, :100], frames=100))


@pytest.mark.parametrize("backend", BACKENDS)
def test_hammering_one_program_never_corrupts_state(backend):
    """4 threads call run() on one program in a loop: every call either runs whole or raises;
    the state afterwards is exactly that of (successful calls x frames) serial frames."""
    g = dgen.Graph()
    ph = g.n(Op.phasor(g.alloc()), 1234.5, 0.0)
    g.output(0, ph)
    g.output(1, g.n(Op.accum(g.alloc()), 1.0, 0.0, 0.0, 1000.0))
    frames = 2000 if backend == "reference" else 100_000  # long enough for calls to overlap
    prog = dgen.compile(g, backend=backend, frame_count=frames)
    ok, refused = [], []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work():
        start.wait()
        for _ in range(40):
            try:
                prog.run()
                with lock:
                    ok.append(1)
            except dgen.ConcurrentRunError:
                with lock:
                    refused.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(ok) + len(refused) == 160 and ok
    fresh = dgen.compile(g, backend=backend, frame_count=frames)
    for _ in range(len(ok)):
        fresh.run()
    np.testing.assert_array_equal(prog.run(frames=16), fresh.run(frames=16))
    assert prog.run(frames=1)[1, 0] == (len(ok) * frames + 16) % 1000  # every frame counted once


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_forward_backward_raises(backend):
    g, loss = patch(gain=0.5)
    frames = 200_000 if backend != "reference" else 10_000
    prog = dgen.compile(g, backend=backend, frame_count=frames, backwards=True)
    x = signal(frames)
    prog.forward_backward(loss, x)  # builds the adjoint first
    errors = []
    t = threading.Thread(target=lambda: prog.forward_backward(loss, x))
    t.start()
    try:
        if not wait_busy(prog.forward, t):
            pytest.skip("the first call finished before it was seen running (machine too fast)")
        try:
            prog.forward_backward(loss, x)
        except dgen.ConcurrentRunError as e:
            errors.append(str(e))
    finally:
        t.join(120)
    if not errors and not t.is_alive():
        pytest.skip("the first call finished before the second (machine too fast)")
    assert errors and "forward_backward()" in errors[0]
