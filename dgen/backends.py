"""Backend registry: name -> factory(graph, frame_count, backwards, instances, **options).

Factories import their runtime lazily so `import dgen` needs NumPy only.
"""

from __future__ import annotations

import numpy as np


def _reference(graph, frame_count, backwards, instances, dtype=np.float64, **options):
    from .interp.program import ReferenceProgram
    from .pipeline import plan

    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"the reference backend computes in float32 or float64, not {np.dtype(dtype)}")
    unknown = sorted(set(options) - {"expand"})
    if unknown:  # a misspelt option must not be ignored silently
        raise TypeError(f"unknown option(s) for the reference backend: {unknown}")

    if backwards:
        from .train.program import reference_training_program

        return reference_training_program(graph, frame_count, instances, dtype, **options)
    return ReferenceProgram(plan(graph, expand=options.get("expand", False)), frame_count, instances, dtype)


def _c(graph, frame_count, backwards, instances, **options):
    from .runtime.c_program import c_program

    return c_program(graph, frame_count, backwards, instances, **options)


def _cuda(graph, frame_count, backwards, instances, **options):
    try:
        from .runtime.cuda_program import cuda_program
    except ImportError as e:
        from .errors import BackendUnavailable

        raise BackendUnavailable(f"the CUDA backend is not available here ({e})") from e

    return cuda_program(graph, frame_count, backwards, instances, **options)


BACKENDS = {"reference": _reference, "c": _c, "cuda": _cuda}
