"""Central finite differences in float64 on the reference, vs the adjoint graph."""

from __future__ import annotations

import numpy as np

import dgen


def finite_difference(prog, param, eps, inputs=None):
    v0 = param.value
    param.value = v0 + eps
    prog.reset()
    up = prog.run(inputs)[0].mean()
    param.value = v0 - eps
    prog.reset()
    down = prog.run(inputs)[0].mean()
    param.value = v0
    return (up - down) / (2 * eps)


def check(build, frames=128, eps=1e-6, rtol=1e-4, atol=1e-9, inputs=None, backend="reference"):
    """build() -> (graph, [parameters], loss node with output(0) = loss). Asserts AD == FD."""
    g, params, loss = build()
    prog = dgen.compile(g, backend=backend, frame_count=frames, backwards=True)
    prog.reset()
    _, grads = prog.forward_backward(loss, inputs)
    ref = dgen.compile(g, backend="reference", frame_count=frames)
    for p in params:
        fd = finite_difference(ref, p, eps, inputs)
        ad = grads[p][0]
        assert np.isfinite(ad), f"{p.name}: gradient {ad}"
        assert abs(ad - fd) <= atol + rtol * max(abs(fd), abs(ad)), f"{p.name}: AD {ad} vs FD {fd}"
    return grads
