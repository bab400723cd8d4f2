"""Renderers: a scheduled graph -> source text (C SIMD now; CUDA later)."""

from __future__ import annotations

from ..errors import BackendUnavailable

RENDERABLE = ("c",)


def generate(graph, backend: str = "c", frame_count: int = 4096, instances: int = 1, backwards: bool = False,
             **options) -> str:
    """The source `dgen.compile` would build for these arguments, without compiling it.

    Needs no compiler. Options as for compile: tile, keep. (frame_count does not change the
    code: programs run any number of frames.)
    """
    if backend not in RENDERABLE:
        raise BackendUnavailable(f"generate: no source renderer for backend {backend!r}; choose one of "
                                 f"{list(RENDERABLE)}")
    if backwards:
        raise NotImplementedError("generate() renders forward programs; for training code use "
                                  "dgen.compile(g, backwards=True, ...).source")
    from ..pipeline import plan
    from .c import render_c

    p = plan(graph, expand=True)
    return render_c(p.graph, p.schedule, p.layout, p.reverse, options.get("keep", ()), lanes=instances > 1,
                    tile=options.get("tile")).source
