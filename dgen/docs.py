"""Generate docs/ops.md from the op classes and the building blocks' docstrings.

    python -m dgen.docs            # rewrite docs/ops.md
    python -m dgen.docs --check    # exit 1 if docs/ops.md is out of date

Every fact comes from the code: each registered op's name, how it is spelled (`Op.add` or
`Op.phasor(cell)`), its inputs (from its `ref`/`step`/`run` signature), arity, scheduling
kind and formula (its docstring); each building block's signature and docstring. A test
checks that the committed file equals this output.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

OPS_MD = Path(__file__).resolve().parents[1] / "docs" / "ops.md"

SECTIONS = [  # (title, what it holds, predicate on an op class)
    (
        "Sources and sinks",
        "Values known before the frame loop, and outputs.",
        lambda c: c.kind in ("source", "sink") and not _internal(c),
    ),
    ("Elementwise (pure)", "Stateless, frame by frame independent: run in vector blocks.", lambda c: c.kind == "pure"),
    (
        "State",
        "Own a cell (`g.alloc()`); run frame by frame in sequential blocks.",
        lambda c: c.kind == "state" and not _internal(c),
    ),
    (
        "Whole-signal (buffer)",
        "Need whole signals (windowed FFTs); they split the frame loop.",
        lambda c: c.kind == "buffer" and not _internal(c),
    ),
    (
        "Autodiff internals",
        "Made by the gradient transform (dgen/transform/autodiff.py), not by users.",
        lambda c: _internal(c),
    ),
]


def _internal(cls) -> bool:
    return cls.__module__.endswith(".adjoint") or cls.name.endswith("_grad")


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip() or "(undocumented)"


def _cell(text: str) -> str:
    """Markdown table cell text: pipes escaped, one line."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    """A code span for a table cell (double backticks when the text holds one)."""
    text = _cell(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def spelling(name: str, cls) -> str:
    """How a user writes the op: `Op.add`, or `Op.phasor(cell)` for configured ops."""
    from .ops import Op

    if not isinstance(getattr(Op, name), type):
        return f"Op.{name}"
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    args = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in params]
    return f"Op.{name}({', '.join(args)})"


def _method(cls):
    """(method, leading parameters to skip) whose signature names the inputs."""
    from .ops import Primitive

    for meth, skip in (("step", 4), ("run", 3), ("ref", 1)):
        fn = getattr(cls, meth, None)
        if fn is not None and fn is not getattr(Primitive, meth, None) and meth in _defined(cls):
            return fn, skip
    return None, 0


def _defined(cls) -> set:
    from .ops import Primitive

    names = set()
    for c in cls.__mro__:
        if c is Primitive:
            break
        names |= set(vars(c))
    return names


def input_names(cls) -> str:
    lo, hi = (cls.arity, cls.arity) if isinstance(cls.arity, int) else cls.arity
    if hi == 0:
        return "–"
    fn, skip = _method(cls)
    params = list(inspect.signature(fn).parameters.values())[skip:] if fn else []
    required = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
    optional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is not p.empty]
    star = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), None)
    if star:
        return ", ".join(required + [f"{star}…"])
    if len(required) == lo and (hi is None or len(required) + len(optional) >= hi):
        extra = optional[: hi - lo] if hi is not None else optional
        return ", ".join(required) + (f", [{', '.join(extra)}]" if extra else "")
    return ", ".join(f"x{i}" for i in range(lo))


def arity_text(arity) -> str:
    if isinstance(arity, int):
        return str(arity)
    lo, hi = arity
    return f"{lo}+" if hi is None else f"{lo}–{hi}"


def _op_sections(registry) -> list[str]:
    lines, details = [], []
    for title, blurb, pred in SECTIONS:
        members = [(n, c) for n, c in registry.items() if pred(c)]
        if not members:
            continue
        lines += [f"## {title}", "", blurb, "", "| op | inputs | arity | kind | formula |", "|---|---|---|---|---|"]
        for name, cls in members:
            doc = _doc(cls)
            first = doc.split("\n\n")[0]
            lines.append(
                f"| `{spelling(name, cls)}` | {_cell(input_names(cls))} | {arity_text(cls.arity)} "
                f"| {cls.kind} | {_code(first)} |"
            )
            if first != doc:
                details.append((name, doc))
        lines.append("")
    if details:
        lines += ["## Details", ""]
        for name, doc in details:
            lines += [f"### `{name}`", "", "```", doc, "```", ""]
    return lines


def _blocks() -> list[str]:
    from . import dsp
    from .graph import Graph

    lines = [
        "## Building blocks",
        "",
        "Composites of the primitives above (`dgen/dsp/blocks.py`): they have no gradient rules of "
        "their own and differentiate through their parts. Those with a `Graph` method are called "
        "as `g.name(...)`.",
        "",
    ]
    for name in dsp.__all__:
        fn = getattr(dsp, name)
        params = list(inspect.signature(fn).parameters.values())
        rest = ", ".join(str(p) for p in params[1:])
        call = f"g.{name}({rest})" if hasattr(Graph, name) else f"dgen.dsp.{name}(g, {rest})"
        lines += [f"### `{call}`", "", _doc(fn), ""]
    return lines


def generate() -> str:
    """The text of docs/ops.md."""
    from .ops import REGISTRY

    head = [
        "# dgen ops",
        "",
        "<!-- generated by `python -m dgen.docs` from the op classes' docstrings; do not edit by hand -->",
        "",
        "Every primitive registered in `dgen.ops.REGISTRY`, then the building blocks. Build nodes with "
        "`g.n(op, *inputs)`; a plain number as an input becomes a constant. `kind` is how the scheduler "
        "treats the op: `pure` ops go into vector blocks, `state` ops into sequential blocks, `buffer` "
        "ops need whole signals. The contract these formulas summarise is "
        "[spec/ops.md](../../shared/spec/ops.md); `sr` is the sample rate, `s` the op's cell.",
        "",
    ]
    return "\n".join(head + _op_sections(REGISTRY) + _blocks()).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dgen.docs", description="Generate docs/ops.md.")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is out of date, write nothing")
    ap.add_argument("-o", "--output", default=str(OPS_MD), help=f"default {OPS_MD}")
    args = ap.parse_args(argv)
    text, path = generate(), Path(args.output)
    if args.check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run python -m dgen.docs", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
