"""Renderers: a scheduled graph -> source text (C SIMD, CUDA)."""

from __future__ import annotations

from ..errors import BackendUnavailable

RENDERABLE = ("c", "cuda")


def generate(
    graph, backend: str = "c", frame_count: int = 4096, instances: int = 1, backwards: bool = False, **options
) -> str:
    """The source `dgen.compile` would build for these arguments, without compiling it.

    Needs no compiler. Options as for compile: tile, keep. (frame_count does not change the
    code: programs run any number of frames.)
    """
    if backend not in RENDERABLE:
        raise BackendUnavailable(
            f"generate: no source renderer for backend {backend!r}; choose one of {list(RENDERABLE)}"
        )
    if backwards:
        raise NotImplementedError(
            "generate() renders forward programs; for training code use dgen.compile(g, backwards=True, ...).source"
        )
    from ..pipeline import plan

    p = plan(graph, expand=True)
    if backend == "cuda":
        from .cuda import render_cuda

        return render_cuda(p.graph, p.schedule, p.layout, p.reverse, options.get("keep", ())).source
    from .c import render_c

    return render_c(
        p.graph, p.schedule, p.layout, p.reverse, options.get("keep", ()), lanes=instances > 1, tile=options.get("tile")
    ).source
