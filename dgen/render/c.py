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
    void dgen_stageK(float *mem, float *const *ext, int frames, int groups, long ostride)
and flushes denormals while it runs. `ostride` is the row length of the instance-major
result array that output nodes write into when instances are in lanes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..analysis import SEQUENTIAL
from .cstyle import SOURCES, CStyleRenderer, Step, float_literal, split_stages
from .prelude import PRELUDE

FRAMES_TILE = 256  # frames per tile, one instance
LANES_TILE = 64  # frames per tile with instances in lanes (each frame is DGEN_W floats)

SUPPORT = r"""
/* ---- dgen kernel support ------------------------------------------------ */
#ifndef DGEN_ALIGNED
#define DGEN_ALIGNED __attribute__((aligned(64)))
#endif

/* ops.md memory index: j = floor(x) wrapped into [0, size); a non-finite x gives 0.
   Integer arithmetic where it is exact, fmod in double beyond int range. */
static inline int dgen_wrap(float x, int size) {
    float f = floorf(x);
    if (f >= 0.0f && f < 2147483648.0f) {
        int j = (int)f;
        return j < size ? j : j % size;
    }
    if (f < 0.0f && f >= -2147483648.0f) {
        int j = (int)((long long)f % size);
        return j < 0 ? j + size : 0;
    }
    if (!isfinite(f)) return 0;
    double r = fmod((double)f, (double)size);
    return (int)(r < 0.0 ? r + size : r);
}
static inline float sf_mread(const float *base, float x, int size) { return base[dgen_wrap(x, size)]; }
static inline void sf_mwrite(float *base, float x, int size, float v) { base[dgen_wrap(x, size)] = v; }
static inline void sf_maccum(float *base, float x, int size, float v) { base[dgen_wrap(x, size)] += v; }
static inline float sf_mtake(float *base, float x, int size) {
    float *q = base + dgen_wrap(x, size);
    float v = *q;
    *q = 0.0f;
    return v;
}
/* lanes: slot j of lane l lives at base[j * stride + l] */
static inline vf vf_mread(const float *base, vf x, int size, size_t stride) {
    vf r;
    for (int l = 0; l < DGEN_W; l++) r[l] = base[(size_t)dgen_wrap(x[l], size) * stride + l];
    return r;
}
static inline void vf_mwrite(float *base, vf x, int size, size_t stride, vf v) {
    for (int l = 0; l < DGEN_W; l++) base[(size_t)dgen_wrap(x[l], size) * stride + l] = v[l];
}
static inline void vf_maccum(float *base, vf x, int size, size_t stride, vf v) {
    for (int l = 0; l < DGEN_W; l++) base[(size_t)dgen_wrap(x[l], size) * stride + l] += v[l];
}
static inline vf vf_mtake(float *base, vf x, int size, size_t stride) {
    vf r;
    for (int l = 0; l < DGEN_W; l++) {
        float *q = base + (size_t)dgen_wrap(x[l], size) * stride + l;
        r[l] = *q;
        *q = 0.0f;
    }
    return r;
}
/* a tile of len frames x DGEN_W lanes -> DGEN_W rows (`row` floats apart) of an
   instance-major array: W x W blocks transposed in registers where the ISA makes it cheap */
#if defined(__AVX512F__) && DGEN_W == 16
static inline void dgen_transpose_block_(float *dst, size_t row, const vf *src) {
    __m512 r[16], t[16];
    for (int k = 0; k < 16; k++) r[k] = (__m512)src[k];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        __m512d a = (__m512d)t[4 * k], b = (__m512d)t[4 * k + 1], c = (__m512d)t[4 * k + 2];
        __m512d d = (__m512d)t[4 * k + 3];
        r[4 * k] = (__m512)_mm512_unpacklo_pd(a, c);
        r[4 * k + 1] = (__m512)_mm512_unpackhi_pd(a, c);
        r[4 * k + 2] = (__m512)_mm512_unpacklo_pd(b, d);
        r[4 * k + 3] = (__m512)_mm512_unpackhi_pd(b, d);
    }
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) {
            t[8 * k + j] = _mm512_shuffle_f32x4(r[8 * k + j], r[8 * k + 4 + j], 0x88);
            t[8 * k + 4 + j] = _mm512_shuffle_f32x4(r[8 * k + j], r[8 * k + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        _mm512_storeu_ps(dst + j * row, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
        _mm512_storeu_ps(dst + (8 + j) * row, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd));
    }
}
#define DGEN_TRANSPOSE_BLOCK_ 1
#elif defined(__AVX__) && DGEN_W == 8
static inline void dgen_transpose_block_(float *dst, size_t row, const vf *src) {
    __m256 r[8], t[8];
    for (int k = 0; k < 8; k++) r[k] = (__m256)src[k];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) {
        r[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        r[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xee);
        r[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        r[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + j * row, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_storeu_ps(dst + (4 + j) * row, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}
#define DGEN_TRANSPOSE_BLOCK_ 1
#endif
static inline void dgen_transpose_out(float *dst, size_t row, const vf *src, int len) {
    int i = 0;
#ifdef DGEN_TRANSPOSE_BLOCK_
    for (; i + DGEN_W <= len; i += DGEN_W) dgen_transpose_block_(dst + i, row, src + i);
#endif
    for (int l = 0; l < DGEN_W; l++)
        for (int k = i; k < len; k++) dst[l * row + k] = src[k][l];
}
int dgen_width(void);
int dgen_width(void) { return DGEN_W; }
"""


@dataclass(frozen=True)
class CSource:
    """A rendered C program: the source and how Python drives its stages."""

    source: str
    steps: tuple[Step, ...]
    lanes: bool
    reverse: bool
    tile: int

    @property
    def stages(self):
        return [s.stage for s in self.steps if s.kind == "stage"]


class CRenderer(CStyleRenderer):
    name = "C"
    signature = ("void {name}(float *restrict mem, float *const *restrict ext, int frames, int groups, "
                 "long ostride)")

    def render(self, graph, schedule, layout, reverse=False, keep=(), lanes=False, tile=None) -> CSource:
        self.check(graph)
        tile = int(tile or (LANES_TILE if lanes else FRAMES_TILE))
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        steps = split_stages(graph, schedule, keep)
        head = [f"/* generated by dgen: {len(graph)} nodes, {len(steps)} step(s), "
                f"{'instances in lanes' if lanes else 'frames in lanes'}"
                f"{', frames reversed' if reverse else ''} */",
                PRELUDE, SUPPORT,
                f"#define DGEN_TILE {tile if lanes else f'(({tile} + DGEN_W - 1) / DGEN_W * DGEN_W)'}"]
        funcs = [_StageWriter(self, graph, layout, s.stage, lanes, reverse).function()
                 for s in steps if s.kind == "stage"]
        return CSource("\n".join(head + funcs) + "\n", steps, lanes, reverse, tile)


def _unused(body, names) -> list[str]:
    """`(void)x;` for locals no statement reads (an op may ignore operands, as seq does)."""
    code = re.sub(r"/\*.*?\*/", "", "\n".join(body))
    counts = Counter(re.findall(r"\b[xv]\d+\b", code))
    return [f"(void){name};" for name in names if counts[name] < 2]


def _comment(op) -> str:
    return repr(op).replace("*/", "* /")


class _StageWriter:
    """Writes one stage function (see the module docstring for the two lane models)."""

    def __init__(self, renderer, graph, layout, stage, lanes, reverse):
        self.r, self.g, self.layout, self.st = renderer, graph, layout, stage
        self.lanes, self.reverse = lanes, reverse
        self.slot_of = stage.slot_of()
        self.outs = {s.node for s in stage.slots if s.kind == "out"}
        self.results = {s.node for s in stage.slots if s.kind == "output"}
        self.ins = {s.node for s in stage.slots if not stage.written(s)}

    # ------------------------------------------------------------------ addressing
    def cell_addr(self, cell_id: int) -> str:
        at = self.layout.offsets[cell_id]
        return f"mem + (size_t){at} * stride + gw" if self.lanes else f"mem + {at}"

    def tile_buffers(self) -> list[int]:
        if self.lanes:
            return sorted(self.st.buffered | self.results)
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
        if self.lanes:  # one pass over all frames per group of DGEN_W instances
            L += [f"    vf b{n}[DGEN_TILE];" for n in self.tile_buffers()]
            L.append("    const size_t stride = (size_t)groups * DGEN_W;")
            L.append("    for (int g = 0; g < groups; g++) {")
            L.append("        const size_t gw = (size_t)g * DGEN_W;")
            L.append("        (void)stride; (void)gw; (void)ostride;")
            L += ["    " + line for line in body]
            L.append("    }")
        else:
            L += [f"    float b{n}[DGEN_TILE] DGEN_ALIGNED = {{0}};" for n in self.tile_buffers()]
            L.append("    (void)groups; (void)ostride;")
            L += body
        L += ["    }", "    DGEN_FTZ_END", "}", ""]
        return "\n".join(L)

    def state_loads(self) -> list[str]:
        T, L = ("vf", []) if self.lanes else ("float", [])
        for i in self.st.params:
            at = self.layout.offsets[self.g.nodes[i].op.cell.id]
            src = f"vf_load(mem + (size_t){at} * stride + gw)" if self.lanes else f"mem[{at}]"
            L.append(f"    const {T} p{i} = {src};")
        for n in self.st.uniforms:
            nd = self.g.nodes[n]
            args = [self.ref(i, self.lanes, ()) for i in nd.inputs]
            L.append(f"    const {T} u{n} = {self.r.pure_expr(nd, 'vf' if self.lanes else 'sf', args)};"
                     f" /* {_comment(nd.op)} */")
        for c in self.st.cells:
            src = f"vf_load({self.cell_addr(c)})" if self.lanes else f"mem[{self.layout.offsets[c]}]"
            L.append(f"    {T} s{c} = {src};")
        return L

    def state_stores(self) -> list[str]:
        if self.lanes:
            return [f"    vf_store({self.cell_addr(c)}, s{c});" for c in self.st.cells]
        return [f"    mem[{self.layout.offsets[c]}] = s{c};" for c in self.st.cells]

    def tile_loop(self) -> list[str]:
        start = "frames - done - len" if self.reverse else "done"
        L = ["    for (int done = 0; done < frames; done += DGEN_TILE) {",
             "        const int len = frames - done < DGEN_TILE ? frames - done : DGEN_TILE;",
             f"        const int t0 = {start};",
             "        (void)t0;"]
        copy = "memcpy({0}, {1}, (size_t)len * sizeof(float));"
        if not self.lanes:
            L += ["        " + copy.format(f"b{s.node}", f"e{k} + t0")
                  for k, s in enumerate(self.st.slots) if not self.st.written(s)]
        for k, block in enumerate(self.st.blocks):
            L += self.block(k, block)
        for k, s in enumerate(self.st.slots):
            if self.lanes and s.kind == "output":  # instance-major result rows
                row = f"e{k} + gw * (size_t)ostride + t0"
                L.append(f"        dgen_transpose_out({row}, (size_t)ostride, b{s.node}, len);")
            elif not self.lanes and self.st.written(s):
                L.append("        " + copy.format(f"e{k} + t0", f"b{s.node}"))
        L.append("    }")
        return L

    # ------------------------------------------------------------------ one block
    def block(self, k, block) -> list[str]:
        skip = self.st.invariant
        nodes = [n for n in block.nodes if self.g.nodes[n].op.name not in SOURCES and n not in skip]
        if not nodes:
            return []
        seq = block.kind == SEQUENTIAL
        vec = self.lanes or not seq
        step = "i++" if seq or self.lanes else "i += DGEN_W"
        loop = ("for (int i = len - 1; i >= 0; i--)" if seq and self.reverse
                else f"for (int i = 0; i < len; {step})")
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
            body.append(self.statement(nd, vec, args) + f" /* {_comment(nd.op)} */")
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
            if i in self.st.buffered:
                return f"b{i}[i]", False
            return f"vf_load(e{self.slot_of[i]} + at)", True
        return (f"vf_load(b{i} + i)" if vec else f"b{i}[i]"), False

    def stores(self, n, vec) -> list[str]:
        out = []
        if self.lanes:
            if n in self.st.buffered:
                out.append(f"b{n}[i] = v{n};")
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
            return f"vf_splat({name})" if vec and not self.lanes else name
        return f"v{i}" if i in local else f"x{i}"

    def statement(self, nd, vec, args) -> str:
        T, p = ("vf", "vf") if vec else ("float", "sf")
        if self.r.renders(nd.op) == "state":
            base = self.cell_addr(nd.op.cell.id)
            return self.r.state_stmt(nd, T, p, args, base, ", stride" if self.lanes else "")
        return f"{T} v{nd.id} = {self.r.pure_expr(nd, p, args)};"


def render_c(graph, schedule, layout, reverse=False, keep=(), lanes=False, tile=None) -> CSource:
    return CRenderer().render(graph, schedule, layout, reverse, keep, lanes, tile)
