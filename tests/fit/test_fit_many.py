"""dgen.fit_many: one patch fitted to several targets, on every executor."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from _builders import SAMPLE_RATE, build_onepole, render_onepole  # tests/fit is on sys.path (conftest)

import dgen
from dgen.errors import BackendUnavailable


def _backend():
    try:
        from dgen.runtime.cc import find_compiler

        find_compiler()
        return "c"
    except BackendUnavailable:
        return "reference"


BACKEND = _backend()
TRUE = (0.3, 0.6, 0.85)


@pytest.fixture(scope="module")
def targets():
    return [render_onepole(a) for a in TRUE]


def _fit(targets, executor, **kw):
    return dgen.fit_many(
        build_onepole,
        targets,
        steps=150,
        executor=executor,
        backend=BACKEND,
        sample_rate=SAMPLE_RATE,
        progress=False,
        **kw,
    )


def _check(results):
    assert [r.index for r in results] == [0, 1, 2]
    for r, a in zip(results, TRUE):
        assert abs(r.values["a"] - a) < 5e-3, (r, a)
        assert r.loss < 1e-6
        assert len(r.history) == 150 and r.history[-1]["step"] == 150


def test_serial_recovers_each_coefficient(targets):
    _check(_fit(targets, "serial"))


def test_process_agrees_with_serial(targets):
    serial, procs = _fit(targets, "serial"), _fit(targets, "process", workers=2)
    _check(procs)
    for s, p in zip(serial, procs):
        assert s.values == p.values and s.loss == p.loss  # same program, same steps: identical


def test_multistart_instances_keep_the_best(targets):
    (r,) = dgen.fit_many(
        build_onepole,
        targets[:1],
        steps=150,
        executor="serial",
        backend=BACKEND,
        sample_rate=SAMPLE_RATE,
        instances=3,
        progress=False,
    )
    assert abs(r.values["a"] - TRUE[0]) < 5e-3 and 0 <= r.instance < 3


def test_targets_as_files(tmp_path, targets):
    pytest.importorskip("soundfile")
    path = tmp_path / "t.wav"
    dgen.save_audio(path, targets[1], sample_rate=SAMPLE_RATE)
    (r,) = _fit([path], "serial")
    assert abs(r.values["a"] - TRUE[1]) < 5e-3


def test_bad_build_and_executor_name_the_problem(targets):
    with pytest.raises(dgen.DgenError, match="cannot be pickled"):
        dgen.fit_many(lambda g, t: None, targets, executor="process")
    with pytest.raises(ValueError, match="executor must be one of"):
        dgen.fit_many(build_onepole, targets, executor="threads")
    with pytest.raises(dgen.GraphError, match=r"must return \(parameters, loss node\)"):
        dgen.fit_many(lambda g, t: t, targets, executor="serial")


HAVE_RAY = importlib.util.find_spec("ray") is not None


@pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (an optional extra: pip install ray)")
def test_ray_on_a_local_instance(targets):
    import ray

    started = not ray.is_initialized()
    if started:  # workers import _builders from this folder, as a user's job ships its code
        here = str(Path(__file__).parent)
        path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}}
        )
    try:
        ray_results = _fit(targets, "ray")
    finally:
        if started:
            ray.shutdown()
    _check(ray_results)
    for s, r in zip(_fit(targets, "serial"), ray_results):
        assert s.values == r.values


def test_ray_missing_is_backend_unavailable(targets, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(BackendUnavailable, match="pip install ray"):
        _fit(targets, "ray")
