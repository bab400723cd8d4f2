"""The bookkeeping of training loops that backends run without `TrainingContext.step` per step
(`program.train_steps`, called by `TrainingContext.train`): they record the loss, gradients and
new values of every step into arrays, stop after the first step with a non-finite loss,
gradient or value, and hand the arrays to `finish`, which writes the context exactly as the
per-step loop would have: the same history rows, the same `TrainingError` message at the same
step (that step counts, its update is not applied), parameter values and gradients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import errors


@dataclass
class ParamTable:
    """The trained parameters as arrays: values before the first step (P, B) and bounds (P, 1)."""

    start: np.ndarray
    low: np.ndarray
    high: np.ndarray
    bounded: bool  # any min or max at all (else the clamp can be skipped)


def param_table(params, instances: int) -> ParamTable:
    start = np.stack([np.asarray(p.instance_values(instances), np.float64) for p in params])
    low = np.array([[-np.inf if p.min is None else p.min] for p in params])
    high = np.array([[np.inf if p.max is None else p.max] for p in params])
    return ParamTable(start, low, high, any(p.min is not None or p.max is not None for p in params))


def python_loop(ctx, steps, inputs, bar):
    """The generic per-step loop (zero_grad, forward_backward, step)."""
    loss = None
    for _ in range(steps):
        ctx.zero_grad()
        loss = ctx.forward_backward(inputs)
        ctx.step()
        bar.update(1, loss=np.min(loss))
    return loss


def finish(ctx, params, start, losses, grads, values):
    """Write `steps` recorded steps into ctx. start (P, B): the values before the first step;
    losses (S, B), grads and values (S, P, B). Returns the last loss as `train` does."""
    if len(losses) == 0:  # train(0): nothing ran, nothing changes
        return None
    B, limit = start.shape[1], ctx._limit()
    bad = ~np.isfinite(losses).all(axis=1) | ~np.isfinite(grads).all(axis=(1, 2))
    bad |= ~(np.abs(values).max(axis=(1, 2)) <= limit)
    good = int(np.argmax(bad)) if bad.any() else len(losses)
    scalar = (lambda a: float(a[0])) if B == 1 else (lambda a: a.copy())  # rows own their values
    first = ctx.steps + 1
    ctx.history.extend(
        {"step": first + s, "loss": scalar(losses[s]), **{p.name: scalar(values[s, k]) for k, p in enumerate(params)}}
        for s in range(good)
    )
    ctx.steps += good
    before = values[good - 1] if good else start
    ran = min(good, len(losses) - 1)  # the last step whose forward_backward ran (a failing one too)
    for k, p in enumerate(params):  # copies: nothing the caller gets keeps the whole record alive
        p.value = before[k, 0] if B == 1 else before[k].copy()
        p.grad = float(grads[ran, k, 0]) if B == 1 else grads[ran, k].copy()
    ctx.last_loss = losses[ran].copy()
    if good < len(losses):  # as TrainingContext.step: the step counts, its update is not applied
        message = _problem(ctx, params, before, losses[good], grads[good], values[good], limit)
        ctx.steps += 1
        raise errors.TrainingError(message)
    return float(losses[-1][0]) if B == 1 else losses[-1].copy()


def _problem(ctx, params, before, loss, grads, values, limit):
    """TrainingContext.step's message for the next step."""
    step = ctx.steps + 1
    if not np.all(np.isfinite(loss)):
        shown = ", ".join(f"{p.name}={v[0] if len(v) == 1 else v}" for p, v in zip(params, before))
        shown_loss = loss if len(loss) > 1 else loss[0]
        return f"the loss is {shown_loss} (not finite) at step {step}; parameter values: {shown}"
    one = (lambda a: a[0]) if len(loss) == 1 else (lambda a: a)  # floats for one instance, as step()
    for k, p in enumerate(params):
        if not np.all(np.isfinite(grads[k])):
            return f"parameter {p.name!r}: gradient {one(grads[k])} is not finite at step {step}"
        if not np.all(np.isfinite(values[k])):
            return f"parameter {p.name!r} became {one(values[k])} at step {step}"
        if np.any(np.abs(values[k]) > limit):
            why = f"beyond the {ctx._dtype().name} range of the program"
            return f"parameter {p.name!r} became {one(values[k])} at step {step} ({why})"
    return None
