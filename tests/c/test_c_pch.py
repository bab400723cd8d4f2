"""The prelude as a GCC precompiled header (runtime/cc.py): built once per cache dir in a
thread, then `-include`d by later builds, which must give the same results; a damaged .gch
must cost time only."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import dgen
from dgen import Op
from dgen.runtime import cc

from ._csupport import requires_cc

pytestmark = requires_cc


def _graph(k):
    g = dgen.Graph(sample_rate=44100)
    ph = g.n(Op.phasor(g.alloc()), 220.0 + k, 0.0)
    g.n(Op.output(0), g.delay(g.n(Op.sin, ph * 6.283185307179586), 10.5 + k) + ph)
    return g


def _wait_for_pch():
    for t in threading.enumerate():
        if t.name == "dgen-pch":
            t.join()


@pytest.fixture
def gcc_cache(tmp_path, monkeypatch):
    if cc.find_compiler().family != "gcc":
        pytest.skip("precompiled headers are used with GCC only")
    monkeypatch.setenv("DGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cc, "_pch_started", set())
    calls = []
    real = cc.build
    monkeypatch.setattr(
        cc,
        "build",
        lambda src, out, flags, extra=(), **kw: (calls.append(tuple(extra)), real(src, out, flags, extra, **kw)),
    )
    return tmp_path, calls


@pytest.mark.parametrize("B", [1, 16])
def test_later_builds_include_the_precompiled_prelude(gcc_cache, B):
    folder, calls = gcc_cache
    first = dgen.compile(_graph(0), backend="c", frame_count=500, instances=B)
    _wait_for_pch()
    assert len(list(folder.glob("head-*.h.gch"))) == 1 and not list(folder.glob(".tmp-*"))
    second = dgen.compile(_graph(1), backend="c", frame_count=500, instances=B)
    assert "-include" not in calls[0] and "-include" in calls[1]
    cc._loaded.clear()
    for f in folder.glob("head-*.gch"):
        f.unlink()  # the same graph built from the text, for comparison
    plain = dgen.compile(_graph(1), backend="c", frame_count=500, instances=B)
    np.testing.assert_array_equal(second.run(), plain.run())
    assert first.source.count("dgen_lanes_slot_") == second.source.count("dgen_lanes_slot_")  # full text kept


def test_damaged_precompiled_header_is_only_slow(gcc_cache):
    folder, calls = gcc_cache
    dgen.compile(_graph(0), backend="c", frame_count=100)
    _wait_for_pch()
    for f in folder.glob("head-*.h.gch"):
        f.write_bytes(b"not a precompiled header")
    want = dgen.compile(_graph(2), backend="reference", frame_count=100, dtype=np.float32).run()
    got = dgen.compile(_graph(2), backend="c", frame_count=100).run()
    assert "-include" in calls[-1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
