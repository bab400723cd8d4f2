"""Graph drawings as Graphviz DOT text (no graphviz Python package needed).

Nodes are labelled `id: op` and filled by the kind of block the scheduler put them in
(vector, sequential, buffer); each feedback cluster is boxed; cell edges (a write seen by
a read one frame later) are dashed. `dgen graph` turns the text into SVG with `dot`.
"""

from __future__ import annotations

from .analysis import BUFFER, SEQUENTIAL, VECTOR
from .analysis.feedback import cell_edges

COLORS = {VECTOR: "#cfe2f3", SEQUENTIAL: "#f9cb9c", BUFFER: "#d9c3e9"}
SOURCES = ("constant", "input", "param", "tape")


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(nd) -> str:
    op = nd.op
    if op.name == "param":
        return f"{nd.id}: param {op.label}" if getattr(op, "label", "") else f"{nd.id}: param"
    return f"{nd.id}: {op!r}"


def _node_line(nd, kind: str, block: int) -> str:
    name = nd.op.name
    attrs = {"label": _label(nd), "fillcolor": COLORS.get(kind, "white"), "tooltip": f"block {block} ({kind})"}
    if name == "constant":
        attrs.update(shape="plain", style="", fontsize="9", fontcolor="#555555")
        del attrs["fillcolor"]
    elif name in SOURCES:
        attrs["shape"] = "ellipse"
    elif name == "output":
        attrs["shape"] = "house"
    body = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
    return f"n{nd.id} [{body}];"


def to_dot(graph, plan=None, title: str | None = None) -> str:
    """The graph as DOT text. `plan` (from `dgen.pipeline.plan`) gives the block kinds and
    feedback clusters; by default the graph is planned as written (not expanded)."""
    if plan is None:
        from .pipeline import plan as make_plan

        plan = make_plan(graph, expand=False)
    graph = plan.graph
    kinds = plan.schedule.kinds
    block_of = {n: k for k, b in enumerate(plan.schedule.blocks) for n in b.nodes}
    cluster_of = plan.feedback.cluster_of()
    lines = [
        "digraph dgen {",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)};")
    for k, cluster in enumerate(plan.feedback.clusters):
        tag = "feedback loop" if k in plan.feedback.loops else "state, no loop,"
        lines.append(f"  subgraph cluster_feedback{k} {{")
        lines.append(f'    label={_quote(f"{tag} {k}")}; style="rounded,dashed"; color="#cc0000"; fontcolor="#cc0000";')
        lines += ["    " + _node_line(graph.nodes[n], kinds[n], block_of.get(n, -1)) for n in cluster]
        lines.append("  }")
    for nd in graph.nodes:
        if nd.id not in cluster_of:
            lines.append("  " + _node_line(nd, kinds[nd.id], block_of.get(nd.id, -1)))
    for nd in graph.nodes:
        for pos, i in enumerate(nd.inputs):
            label = f' [headlabel="{pos}", labelfontsize=8]' if len(nd.inputs) > 2 else ""
            lines.append(f"  n{i} -> n{nd.id}{label};")
    for w, r in cell_edges(graph):
        cell = graph.nodes[w].op.cell.id
        lines.append(
            f'  n{w} -> n{r} [style=dashed, color="#cc0000", constraint=false, label="c{cell}", '
            'fontsize=9, fontcolor="#cc0000"];'
        )
    lines += _legend()
    lines.append("}")
    return "\n".join(lines) + "\n"


def _legend() -> list[str]:
    out = ["  subgraph cluster_legend {", '    label="blocks"; style="rounded"; color="#999999"; fontsize=10;']
    for kind, color in COLORS.items():
        out.append(f'    legend_{kind} [label="{kind}", fillcolor="{color}", fontsize=9];')
    out.append("    legend_vector -> legend_sequential -> legend_buffer [style=invis];")
    out.append("  }")
    return out
