"""C SIMD renderer: a scheduled graph -> C source, one function per stage.

Two lane models (docs/c_backend.md):
- frames (one instance): vector blocks run over a tile of frames in `vf` vectors (lanes =
  frames; tile buffers are padded to a multiple of DGEN_W, so there is no tail loop);
  sequential blocks are scalar loops over the tile with state in locals. External arrays
  are copied into and out of tile buffers once per tile, so they need no padding.
- lanes (instances > 1): lanes = instances, DGEN_W per group; every block loops over the
  tile's frames with `vf` values, so recurrences run W instances wide. External arrays are
  (frames, groups*W) and memory is (cells, groups*W), instance-minor.

Every stage function has the signature
    void dgen_stageK(float *mem, float *const *ext, int frames, int groups, long istride,
                     long ostride)
and flushes denormals while it runs. With instances in lanes, graph inputs are read from and
output nodes written to instance-major arrays (the user's (B, channels, frames) layout):
`istride` / `ostride` are their row lengths, and tiles are transposed on the way.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..analysis import SEQUENTIAL
from .cstyle import SOURCES, CStyleRenderer, Step, float_literal, split_stages
from .prelude import PRELUDE

# frames per tile, one instance: 4 vectors, at least 32 frames. Short frame loops let the
# out-of-order core overlap the end of one sequential block's recurrence with the next
# block (sos after phasor -> sin: +15% at 32 frames over 256); no graph measured slower.
FRAMES_TILE = "DGEN_MAX_(32, 4 * DGEN_W)"
LANES_TILE = 64  # frames per tile with instances in lanes (each frame is DGEN_W floats)
INTERLEAVE = 2  # instance groups per pass with instances in lanes (independent chains) ...
INTERLEAVE_NODES = 24  # ... for frame loops of at most this many nodes: a small loop is bound by
# its recurrence's latency and two chains nearly double it (phasor -> sin: +25%); a large one
# has independent work enough, and the copy only costs compile time (200 nodes: +60-90%)
STAGES_MARK = "/* ---- stage functions ---------------------------------------------------- */"

SUPPORT = (Path(__file__).with_name("support.h")).read_text()

# Memory ops with instances in lanes. Lanes that run in step (a delay line of every instance
# written at the same position: the usual case) all hold the same index, and slot j of every
# lane is one contiguous vector at base + j * stride: one load or store instead of DGEN_W
# wrapped scalar accesses. Any other index vector takes support.h's per-lane path.
LANE_MEMORY = r"""
/* j when every lane of x is the same value in [0, size) (so floor is the int conversion),
   else -1 */
static inline int dgen_lanes_slot_(vf x, int size) {
    float f = x[0];
    return (DGEN_ALL_ZERO_((vi)x ^ (vi)vf_splat(f)) && f >= 0.0f && f < (float)size) ? (int)f : -1;
}
static inline vf dgen_lanes_mread(const float *base, vf x, int size, size_t stride) {
    int j = dgen_lanes_slot_(x, size);
    return j >= 0 ? vf_load(base + (size_t)j * stride) : vf_mread(base, x, size, stride);
}
static inline void dgen_lanes_mwrite(float *base, vf x, int size, size_t stride, vf v) {
    int j = dgen_lanes_slot_(x, size);
    if (j >= 0) vf_store(base + (size_t)j * stride, v);
    else vf_mwrite(base, x, size, stride, v);
}
static inline void dgen_lanes_maccum(float *base, vf x, int size, size_t stride, vf v) {
    int j = dgen_lanes_slot_(x, size);
    if (j >= 0) vf_store(base + (size_t)j * stride, vf_load(base + (size_t)j * stride) + v);
    else vf_maccum(base, x, size, stride, v);
}
static inline vf dgen_lanes_mtake(float *base, vf x, int size, size_t stride) {
    int j = dgen_lanes_slot_(x, size);
    if (j < 0) return vf_mtake(base, x, size, stride);
    vf v = vf_load(base + (size_t)j * stride);
    vf_store(base + (size_t)j * stride, vf_splat(0.0f));
    return v;
}
"""
# The text every C kernel starts with (after a one-line comment): the same for all graphs, so
# the runtime may compile it once as a precompiled header (runtime/cc.py; parsing it is half
# of a 200-node build).
HEAD = "\n".join([PRELUDE, SUPPORT, LANE_MEMORY])


@dataclass(frozen=True)
class CSource:
    """A rendered C program: the source and how Python drives its stages."""

    source: str
    steps: tuple[Step, ...]
    lanes: bool
    reverse: bool
    tile: int | str  # frames per tile, or the C expression of the default

    @property
    def stages(self):
        return [s.stage for s in self.steps if s.kind == "stage"]


class CRenderer(CStyleRenderer):
    name = "C"
    signature = (
        "void {name}(float *restrict mem, float *const *restrict ext, int frames, int groups, "
        "long istride, long ostride)"
    )

    def render(self, graph, schedule, layout, reverse=False, keep=(), lanes=False, tile=None) -> CSource:
        self.check(graph)
        if tile and int(tile) < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        tile = int(tile) if tile else LANES_TILE if lanes else FRAMES_TILE
        steps = split_stages(graph, schedule, keep)
        head = [
            f"/* generated by dgen: {len(graph)} nodes, {len(steps)} step(s), "
            f"{'instances in lanes' if lanes else 'frames in lanes'}"
            f"{', frames reversed' if reverse else ''} */",
            HEAD,
            STAGES_MARK,
        ]
        funcs = [
            _StageWriter(self, graph, layout, s.stage, lanes, reverse, tile).function()
            for s in steps
            if s.kind == "stage"
        ]
        return CSource("\n".join(head + funcs) + "\n", steps, lanes, reverse, tile)

    def state_stmt(self, nd, T, p, args, base, st) -> str:
        if p == "vf" and nd.op.name.startswith("memory_"):  # only instances in lanes use vf memory ops
            p = "dgen_lanes"
        return super().state_stmt(nd, T, p, args, base, st)


def _unused(body, names) -> list[str]:
    """`(void)x;` for locals no statement reads (an op may ignore operands, as seq does)."""
    code = re.sub(r"/\*.*?\*/", "", "\n".join(body))
    counts = Counter(re.findall(r"\b[xv]\d+\b", code))
    return [f"(void){name};" for name in names if counts[name] < 2]


_COMPARE = {"gt": ">", "lt": "<", "gte": ">=", "lte": "<=", "eq": "=="}
_GROUP_LOCAL = re.compile(r"\b([vxsbpu]\d+|gw|at)\b")


def _for_groups(body, U, per_group_uniforms) -> list[str]:
    """`body`, written for one instance group, for U groups: a line naming a per-group local
    (values v/x, state s, params p, tile buffers b, per-instance uniforms u, the lane offset
    gw and frame address at) is repeated once per group with the names suffixed `_<group>`;
    a line naming none (loop heads, braces, tile bounds) is written once."""

    def rename(line, u):
        def sub(m):
            name = m.group(1)
            return name if name[0] == "u" and name not in per_group_uniforms else f"{name}_{u}"

        return _GROUP_LOCAL.sub(sub, line)

    out = []
    for line in body:
        copies = [rename(line, u) for u in range(U)]
        out += copies if copies[0] != line else [line]
    return out


@dataclass(frozen=True)
class _Loop:
    """Blocks fused into one frame loop (instances in lanes)."""

    kind: str
    nodes: tuple


def _comment(op) -> str:
    return repr(op).replace("*/", "* /")


class _StageWriter:
    """Writes one stage function (see the module docstring for the two lane models)."""

    def __init__(self, renderer, graph, layout, stage, lanes, reverse, tile):
        self.r, self.g, self.layout, self.st = renderer, graph, layout, stage
        self.lanes, self.reverse, self.tile = lanes, reverse, tile
        self.slot_of = stage.slot_of()
        self.outs = {s.node for s in stage.slots if s.kind == "out"}
        self.results = {s.node for s in stage.slots if s.kind == "output"}
        self.ins = {s.node for s in stage.slots if not stage.written(s)}
        self.inputs = {s.node for s in stage.slots if s.kind == "input"}  # instance-major in lanes
        # uniforms of constants only: one float per call even with instances in lanes
        per_instance = set(stage.params)
        for n in stage.uniforms:
            if any(i in per_instance for i in graph.nodes[n].inputs):
                per_instance.add(n)
        self.scalar = {n for n in stage.uniforms if n not in per_instance}

    # ------------------------------------------------------------------ addressing
    def cell_addr(self, cell_id: int) -> str:
        at = self.layout.offsets[cell_id]
        return f"mem + (size_t){at} * stride + gw" if self.lanes else f"mem + {at}"

    def tile_buffers(self) -> list[int]:
        if self.lanes:  # one fused frame loop: values crossing blocks are locals
            return sorted(self.results | self.inputs)
        return sorted(self.st.buffered | self.outs | self.results | self.ins)

    # ------------------------------------------------------------------ the function
    def function(self) -> str:
        st, L = self.st, []
        L.append(self.r.signature.format(name=st.name) + " {")
        L.append("    DGEN_FTZ_BEGIN")
        L.append("    {")
        L += [f"    float *const e{k} = ext[{k}]; /* {s.kind} {s.key} */" for k, s in enumerate(st.slots)]
        L.append("    (void)mem; (void)ext;")
        body = self.state_loads() + self.tile_loop() + self.state_stores()
        # the requested tile, shrunk so that the tile buffers fit DGEN_TILE_BYTES (stack)
        sizer = "DGEN_LANES_TILE_" if self.lanes else "DGEN_FRAMES_TILE_"
        nbuf = len(self.tile_buffers()) * self.interleave()
        L.append(f"    enum {{ TILE = {sizer}({self.tile}, {max(1, nbuf)}) }};")
        if self.lanes:
            L += self.lanes_groups(body)
        else:
            L += [f"    float b{n}[TILE] DGEN_ALIGNED = {{0}};" for n in self.tile_buffers()]
            L.append("    (void)groups; (void)istride; (void)ostride;")
            L += body
        L += ["    }", "    DGEN_FTZ_END", "}", ""]
        return "\n".join(L)

    def interleave(self) -> int:
        """Instance groups per pass (instances in lanes; see INTERLEAVE)."""
        if not self.lanes or sum(len(self.loop_nodes(b)) for b in self.loops()) > INTERLEAVE_NODES:
            return 1
        return INTERLEAVE

    def lanes_groups(self, body) -> list[str]:
        """One pass over all frames per group of DGEN_W instances, INTERLEAVE groups at a
        time: each statement of `body` (written for one group) is repeated per group with its
        locals renamed, so the groups' recurrences are independent chains in one loop and
        their latencies overlap. A plain loop takes the groups left over."""
        per_group = {f"u{n}" for n in self.st.uniforms if n not in self.scalar}
        interleave = self.interleave()
        L = [f"    vf b{n}_{u}[TILE];" for n in self.tile_buffers() for u in range(interleave)]
        L += self.uniforms(lambda n: n in self.scalar)
        L.append("    const size_t stride = (size_t)groups * DGEN_W;")
        L.append("    (void)stride; (void)istride; (void)ostride;")
        L.append("    int g = 0;")
        loops = [(1, "for (; g < groups; g++)")]
        if interleave > 1:
            loops.insert(0, (interleave, f"for (; g + {interleave} <= groups; g += {interleave})"))
        for U, loop in loops:
            L.append(f"    {loop} {{")
            L += [f"        const size_t gw_{u} = (size_t)(g + {u}) * DGEN_W; (void)gw_{u};" for u in range(U)]
            L += ["    " + line for line in _for_groups(body, U, per_group)]
            L.append("    }")
        return L

    def state_loads(self) -> list[str]:
        T, L = ("vf", []) if self.lanes else ("float", [])
        for i in self.st.params:
            at = self.layout.offsets[self.g.nodes[i].op.cell.id]
            src = f"vf_load(mem + (size_t){at} * stride + gw)" if self.lanes else f"mem[{at}]"
            L.append(f"    const {T} p{i} = {src};")
        L += self.uniforms(lambda n: n not in self.scalar or not self.lanes)
        for c in self.st.cells:
            src = f"vf_load({self.cell_addr(c)})" if self.lanes else f"mem[{self.layout.offsets[c]}]"
            L.append(f"    {T} s{c} = {src};")
        return L

    def uniforms(self, which) -> list[str]:
        L = []
        for n in self.st.uniforms:
            if which(n):
                nd, vec = self.g.nodes[n], self.lanes and n not in self.scalar
                args = [self.ref(i, vec, ()) for i in nd.inputs]
                T, p = ("vf", "vf") if vec else ("float", "sf")
                L.append(f"    const {T} u{n} = {self.r.pure_expr(nd, p, args)}; /* {_comment(nd.op)} */")
        return L

    def state_stores(self) -> list[str]:
        if self.lanes:
            return [f"    vf_store({self.cell_addr(c)}, s{c});" for c in self.st.cells]
        return [f"    mem[{self.layout.offsets[c]}] = s{c};" for c in self.st.cells]

    def tile_loop(self) -> list[str]:
        start = "frames - done - len" if self.reverse else "done"
        L = [
            "    for (int done = 0; done < frames; done += TILE) {",
            "        const int len = frames - done < TILE ? frames - done : TILE;",
            f"        const int t0 = {start};",
            "        (void)t0;",
        ]
        copy = "memcpy({0}, {1}, (size_t)len * sizeof(float));"
        for k, s in enumerate(self.st.slots):
            if self.lanes and s.kind == "input":  # instance-major rows -> a tile of vectors
                rows = f"e{k} + gw * (size_t)istride + t0"
                L.append(f"        dgen_transpose((float *)b{s.node}, DGEN_W, {rows}, (size_t)istride, DGEN_W, len);")
            elif not self.lanes and not self.st.written(s):
                L.append("        " + copy.format(f"b{s.node}", f"e{k} + t0"))
        for k, block in enumerate(self.loops()):
            L += self.block(k, block)
        for k, s in enumerate(self.st.slots):
            if self.lanes and s.kind == "output":  # a tile of vectors -> instance-major rows
                rows = f"e{k} + gw * (size_t)ostride + t0"
                L.append(
                    f"        dgen_transpose({rows}, (size_t)ostride, (const float *)b{s.node}, DGEN_W, len, DGEN_W);"
                )
            elif not self.lanes and self.st.written(s):
                L.append("        " + copy.format(f"e{k} + t0", f"b{s.node}"))
        L.append("    }")
        return L

    # ------------------------------------------------------------------ one block
    def loops(self) -> list:
        """The frame loops of a tile: one per block with frames in lanes; with instances in
        lanes every block has the same loop (frame by frame, one vf per value), so all blocks
        of the stage run in one loop. Values crossing blocks then stay in registers, and the
        out-of-order core overlaps a recurrence's latency with the vector work of other
        blocks (a phasor's add-floor-sub chain with the sin it feeds)."""
        blocks = self.st.blocks
        if not self.lanes or len(blocks) < 2:
            return list(blocks)
        kind = SEQUENTIAL if any(b.kind == SEQUENTIAL for b in blocks) else blocks[0].kind
        return [_Loop(kind, tuple(n for b in blocks for n in b.nodes))]

    def loop_nodes(self, block) -> list[int]:
        """The nodes a block's frame loop computes (not sources, not per-call uniforms)."""
        skip = self.st.invariant
        return [n for n in block.nodes if self.g.nodes[n].op.name not in SOURCES and n not in skip]

    def block(self, k, block) -> list[str]:
        nodes = self.loop_nodes(block)
        if not nodes:
            return []
        seq = block.kind == SEQUENTIAL
        vec = self.lanes or not seq
        step = "i++" if seq or self.lanes else "i += DGEN_W"
        loop = "for (int i = len - 1; i >= 0; i--)" if seq and self.reverse else f"for (int i = 0; i < len; {step})"
        L = [f"        /* block {k}: {block.kind}, {len(nodes)} node(s) */", f"        {loop} {{"]
        body, local = [], set(nodes)
        needs_at = False
        loaded = []
        for n in nodes:
            for i in self.g.nodes[n].inputs:
                if i not in local and i not in self.st.invariant and i not in loaded:
                    loaded.append(i)
        for i in loaded:
            load, at = self.load(i, vec)
            needs_at |= at
            body.append(f"{'vf' if vec else 'float'} x{i} = {load};")
        for n in nodes:
            nd = self.g.nodes[n]
            args = [self.ref(i, vec, local) for i in nd.inputs]
            stmt = self.select_of_compare(nd, local) if vec else None
            body.append((stmt or self.statement(nd, vec, args)) + f" /* {_comment(nd.op)} */")
            body += self.stores(n, vec)
            needs_at |= self.lanes and n in self.outs
        body += _unused(body, [f"x{i}" for i in loaded] + [f"v{n}" for n in nodes])
        if needs_at:
            body.insert(0, "const size_t at = (size_t)(t0 + i) * stride + gw;")
        L += ["            " + line for line in body]
        L.append("        }")
        return L

    def load(self, i, vec) -> tuple[str, bool]:
        """(expression, whether it uses `at`) reading value i from outside this block."""
        i = self.st.alias.get(i, i)
        if self.lanes:
            if i in self.st.buffered or i in self.inputs:
                return f"b{i}[i]", False
            return f"vf_load(e{self.slot_of[i]} + at)", True
        return (f"vf_load(b{i} + i)" if vec else f"b{i}[i]"), False

    def stores(self, n, vec) -> list[str]:
        out = []
        if self.lanes:
            if n in self.outs:
                out.append(f"vf_store(e{self.slot_of[n]} + at, v{n});")
            if n in self.results:
                out.append(f"b{n}[i] = v{n};")
        elif n in self.st.buffered or n in self.outs or n in self.results:
            out.append(f"vf_store(b{n} + i, v{n});" if vec else f"b{n}[i] = v{n};")
        return out

    def ref(self, i, vec, local) -> str:
        op = self.g.nodes[i].op
        if op.name == "constant":
            lit = float_literal(op.value)
            return f"vf_splat({lit})" if vec else lit
        if i in self.st.invariant:
            name = f"p{i}" if op.name == "param" else f"u{i}"
            scalar = not self.lanes or i in self.scalar
            return f"vf_splat({name})" if vec and scalar else name
        return f"v{i}" if i in local else f"x{i}"

    def select_of_compare(self, nd, local) -> str | None:
        """gswitch(a OP b, x, y) with the comparison in this loop as one compare and blend:
        vf_select would rebuild a mask from the comparison's 1.0/0.0 (an and, a compare).
        Exact: the blend takes x where a OP b holds, as cond > 0 does."""
        if nd.op.name != "gswitch" or nd.inputs[0] not in local:
            return None
        c = nd.inputs[0]
        op = _COMPARE.get(self.g.nodes[c].op.name)
        if op is None:
            return None
        a, b, x, y = (self.ref(i, True, local) for i in (*self.g.nodes[c].inputs, *nd.inputs[1:]))
        return f"vf v{nd.id} = dgen_blend_({a} {op} {b}, {x}, {y});"

    def statement(self, nd, vec, args) -> str:
        T, p = ("vf", "vf") if vec else ("float", "sf")
        if self.r.renders(nd.op) == "state":
            base = self.cell_addr(nd.op.cell.id)
            return self.r.state_stmt(nd, T, p, args, base, ", stride" if self.lanes else "")
        return f"{T} v{nd.id} = {self.r.pure_expr(nd, p, args)};"


def render_c(graph, schedule, layout, reverse=False, keep=(), lanes=False, tile=None) -> CSource:
    return CRenderer().render(graph, schedule, layout, reverse, keep, lanes, tile)
