"""fit_many: fit one patch to many target sounds, each independently, on processes or Ray.

The `build` convention:

    def build(g, target):                 # g: a fresh dgen.Graph; target: g.input(0)
        f = dgen.Parameter(g, 300.0, name="freq", min=20, max=2000)
        y = ...synth using f.node()...
        return [f], g.n(Op.mse, y, target)   # (parameters to fit, per-frame loss node)

- fit_many makes the graph (at `sample_rate`) and the target node, calls `build(g, target)`,
  adds `output(0) = loss` when the graph has no output 0, compiles with backwards=True and
  `frame_count` = the target's length, and trains with `optimizer` for `steps` steps.
- A target is a (frames,) or (channels, frames) array fed as the program's inputs (channel 0 is
  the node `build` gets; a patch may read more channels with `g.input(k)`), or an audio file
  path (read with `dgen.load_audio`, which refuses to resample).
- Each target gets its own graph, program and parameters, built in the worker; nothing is shared.
- With `instances=B`, each fit is a multi-start over B instances (give `Parameter(value=array of
  B)`); the result keeps the instance with the lowest final loss.
- executor="process" (default) runs a spawn `ProcessPoolExecutor`: `build` must be picklable,
  i.e. a function at the top level of an importable module (not a lambda, closure or a function
  defined in `__main__` of an interactive session), and scripts need `if __name__ == "__main__":`.
  "ray" runs each target as a Ray task (Ray is an optional extra: `pip install ray`; Ray pickles
  closures too); it uses a running Ray instance, or starts a local one. "serial" runs in this
  process (debugging, or when targets are few).
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import errors

EXECUTORS = ("process", "ray", "serial")


@dataclass
class FitResult:
    """One target's fit: fitted values by parameter name, final loss (mean over frames at the
    fitted values), per-step history (as TrainingContext.history), and seconds spent."""

    index: int
    values: dict
    loss: float
    history: list = field(default_factory=list, repr=False)
    seconds: float = 0.0
    instance: int = 0  # the best instance of a multi-start fit


@dataclass(frozen=True)
class _Config:
    steps: int
    optimizer: object
    backend: str
    sample_rate: float
    instances: int
    options: dict


def _load_target(target, sample_rate):
    if isinstance(target, (str, Path)):
        from .audio import load_audio

        data, _ = load_audio(target, sample_rate=sample_rate)
        return data.astype(np.float64)
    x = np.asarray(target, np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise errors.RunInputError(f"a target must be (frames,) or (channels, frames), got shape {x.shape}")
    return x


def _build(build, cfg, channels):
    from .graph import Graph
    from .ops import Op

    g = Graph(sample_rate=cfg.sample_rate)
    target = g.input(0)
    got = build(g, target)
    if not (isinstance(got, tuple) and len(got) == 2):
        raise errors.GraphError(f"build(g, target) must return (parameters, loss node), got {got!r}")
    params, loss = list(got[0]), got[1]
    if 0 not in g.outputs():
        g.n(Op.output(0), loss)
    if g.input_channels() > channels:
        raise errors.RunInputError(f"the patch reads {g.input_channels()} input channels; the target has {channels}")
    return g, params, loss


def _fit_one(build, target, index, cfg) -> FitResult:
    """Build, compile and train one target (runs in a worker)."""
    import copy

    from .pipeline import compile as dgen_compile
    from .train import TrainingContext

    start = time.perf_counter()
    x = _load_target(target, cfg.sample_rate)
    g, params, loss = _build(build, cfg, x.shape[0])
    x = x[: g.input_channels()]
    B = cfg.instances
    inputs = x if B == 1 else np.broadcast_to(x, (B, *x.shape))
    prog = dgen_compile(g, backend=cfg.backend, frame_count=x.shape[1], backwards=True, instances=B, **cfg.options)
    ctx = TrainingContext(params, copy.deepcopy(cfg.optimizer), loss, prog)
    ctx.train(cfg.steps, inputs=inputs, progress=False)
    ctx.zero_grad()
    final = np.atleast_1d(ctx.forward_backward(inputs))  # the loss at the fitted values
    best = int(np.nanargmin(final))
    values = {p.name: float(np.broadcast_to(p.value, (B,))[best]) for p in params}
    return FitResult(index, values, float(final[best]), ctx.history, time.perf_counter() - start, best)


def fit_many(
    build,
    targets,
    steps=200,
    optimizer=None,
    executor="process",
    workers=None,
    backend="c",
    sample_rate=44100,
    instances=1,
    progress=None,
    **options,
):
    """Fit the patch that `build(g, target)` makes to each of `targets`; returns one FitResult
    per target, in order. optimizer: a dgen optimizer (copied per target; default Adam(lr=0.05)).
    Extra keyword options go to dgen.compile. See this module's docstring for the conventions."""
    from .progress import progress_bar
    from .train import Adam

    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    targets = list(targets)
    cfg = _Config(
        int(steps),
        optimizer if optimizer is not None else Adam(lr=0.05),
        backend,
        float(sample_rate),
        int(instances),
        dict(options),
    )
    results = [None] * len(targets)
    run = {"serial": _serial, "process": _processes, "ray": _ray}[executor]
    with progress_bar(total=len(targets), desc="fit_many", enable=progress) as bar:
        for res in run(build, targets, cfg, workers):
            results[res.index] = res
            bar.update(1, loss=res.loss)
    return results


def _serial(build, targets, cfg, workers):
    for i, t in enumerate(targets):
        yield _fit_one(build, t, i, cfg)


def _processes(build, targets, cfg, workers):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    try:
        pickle.dumps(build)
    except Exception as e:  # noqa: BLE001 - any pickling failure means the same thing here
        raise errors.DgenError(
            f"fit_many(executor='process'): build={build!r} cannot be pickled ({e}); define it "
            "at the top level of an importable module, or use executor='ray' or 'serial'"
        ) from e
    workers = workers or min(len(targets), os.cpu_count() or 1) or 1
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_fit_one, build, t, i, cfg): i for i, t in enumerate(targets)}
        for fut in as_completed(futures):
            yield _result(fut.result, futures[fut])


def _result(get, index):
    try:
        return get()
    except Exception as e:
        raise errors.TrainingError(f"fit_many: target {index} failed: {type(e).__name__}: {e}") from e


def _ray(build, targets, cfg, workers):
    try:
        import ray
    except ImportError as e:
        raise errors.BackendUnavailable(
            "fit_many(executor='ray') needs Ray, an optional extra: pip install ray (or use executor='process')"
        ) from e
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1)(_fit_one)
    refs = {task.remote(build, t, i, cfg): i for i, t in enumerate(targets)}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield _result(lambda d=done[0]: ray.get(d), refs[done[0]])
