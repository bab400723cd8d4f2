"""Time-parallel chunked scans for sequential blocks whose recurrence is affine in their state.

A sequential block keeps k cells in registers (history cells, gradient accumulators). When
every value in the block is an affine function of the cells' values at the start of the
frame (sums, differences, products and quotients by state-independent values, mix/gswitch with
state-independent weights), one frame maps the state s to A(n) s + c(n), and a run of frames
composes to s_end = c + M s_start. That holds for one-pole, sos and biquad filters, delays by
history cells, and every adjoint recurrence and gradient accumulator of a backward graph
(these are linear even where the forward is not). Then the frames split into chunks of L and:

  pass 1 (one thread per chunk and instance): run the chunk from s = 0 (giving c) and, with
      the block's state-independent terms dropped (the "homogeneous" body), from each unit
      state e_j (giving column j of M); store c and M;
  pass 2 (one thread per instance): walk the chunks in order, s_start(next) = c + M s_start;
  pass 3 (one thread per chunk and instance): run each chunk from its true start state,
      writing the block's signals; the last chunk stores the final state to memory.

The work grows by about k + 2 but the latency of one instance drops from `frames` dependent
steps to about (k + 2) L + frames / L: what fills the GPU when B is small. When one frame's map
is the same every frame (its coefficients are constants or per-call invariants: fixed filters,
every gradient accumulator), pass 1 takes A from one frame per unit state and M = A^L by
squaring, so it runs the chunk once instead of k + 1 times; pass 2 loads the next chunk's
summary while it applies the current one (it is a chain of dependent steps per instance). Floating-point
results differ from the frame-by-frame loop by rounding only (the order of operations changes
with the chunk length), so programs that promise bit-exact streaming do not use scans.
"""

from __future__ import annotations

from ..ops import PURE

# argument positions in which a pure op is linear (the other arguments are its coefficients)
LINEAR_ARGS = {
    "add": (0, 1),
    "sub": (0, 1),
    "mul": (0, 1),
    "div": (0,),
    "mix": (0, 1),
    "gswitch": (1, 2),
    "output": (0,),
}
CELL_OPS = ("history_read", "history_write", "grad_accum")
MAX_CELLS = 8  # pass 1 runs the chunk k + 1 times and pass 2 holds a k x k matrix
SCAN_UNROLL = 8  # frames of a chunk loop unrolled: their loads are in flight together


def affine_nodes(graph, nodes) -> dict[int, bool] | None:
    """node -> True when its value is an affine function of the block's state, False when it
    does not depend on it; None when the block is not affine (or uses memory cells)."""
    local, affine = set(nodes), {}
    for n in nodes:
        nd = graph.nodes[n]
        name = nd.op.name
        dep = [i in local and affine[i] for i in nd.inputs]
        if name == "history_read":
            affine[n] = True
        elif name in ("history_write", "grad_accum"):
            affine[n] = dep[0]
        elif nd.op.kind != PURE:
            return None  # memory ops: their cells are not in registers
        elif not any(dep):
            affine[n] = False
        else:
            at = [j for j, d in enumerate(dep) if d]
            if any(j not in LINEAR_ARGS.get(name, ()) for j in at) or (name == "mul" and len(at) > 1):
                return None
            affine[n] = True
    return affine


def scan_cells(graph, nodes, cells) -> dict[int, bool] | None:
    """The affine classification when the block can run as a chunked scan, else None."""
    if not 1 <= len(cells) <= MAX_CELLS:
        return None
    return affine_nodes(graph, nodes)


# Pass 2 (ScanWriter.pass2); @K@ cells; @INV@: every chunk has the same M (pass 1 still writes
# it with each summary); @FINAL@: no pass 3 follows (the block writes no signals), so pass 1
# summarised the last chunk too and pass 2 stores the end state instead of chunk start states.
# A chunk's map is s -> cv + cM s; "x after y" composes maps.
PASS2 = r"""/* scan pass 2 of @NAME@: chunk start states, one warp per instance */
@KERNEL@ @NAME@_p2(float *@R@ mem, const int frames, const int B, const int chunk,
        const float *@R@ fin, float *@R@ init) {
#define SUMMARY(c, e, j) fin[(((long long)(c) * (@K@ + 1) + (e)) * @K@ + (j)) * B + b]
#define EACH(r) for (int r = 0; r < @K@; r++)
#define LOAD_CHUNK(c) { EACH(r) cv[r] = SUMMARY(c, 0, r); if (!@INV@) EACH(r) EACH(q) cM[r][q] = SUMMARY(c, 1 + q, r); }
/* x = a + y b (vectors) and x = y z (matrices), through T */
#define AFFINE(x, a, y, b) { EACH(r) { T[r][0] = a[r]; EACH(q) T[r][0] += y[r][q] * b[q]; } EACH(r) x[r] = T[r][0]; }
#define MATMUL(x, y, z) { EACH(r) EACH(q) { T[r][q] = 0.0f; EACH(e) T[r][q] += y[r][e] * z[e][q]; } \
                          EACH(r) EACH(q) x[r][q] = T[r][q]; }
    const int lane = threadIdx.x & 31;
    const int b = (int)(((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    if (b >= B) return;  /* b is the same across a warp: whole warps leave */
    const int C = (frames + chunk - 1) / chunk, R = (C + 31) / 32;
    const int c0 = min(C, lane * R), c1 = min(C, c0 + R);
    float s0[@K@], v[@K@], M[@K@][@K@], pv[@K@], pM[@K@][@K@], cv[@K@], cM[@K@][@K@], T[@K@][@K@];
    @LOAD_S0@
    EACH(r) { v[r] = 0.0f; EACH(q) M[r][q] = r == q ? 1.0f : 0.0f; }
    if (@INV@ && (C > 1 || @FINAL@)) EACH(r) EACH(q) cM[r][q] = SUMMARY(0, 1 + q, r);
    /* (v, M) <- chunk c after (v, M) over the lane's chunks; the last chunk's map is never needed */
    for (int c = c0; c < c1 && c < C - 1; c++) {
        LOAD_CHUNK(c)
        AFFINE(v, cv, cM, v)
        MATMUL(M, cM, M)
    }
    /* inclusive scan of the lanes' maps, then (d = 32) lane l takes lane l - 1's */
    for (int d = 1; d <= 32; d <<= 1) {
        const int from = d < 32 ? d : 1;
        EACH(r) {
            pv[r] = __shfl_up_sync(0xffffffffu, v[r], from);
            EACH(q) pM[r][q] = __shfl_up_sync(0xffffffffu, M[r][q], from);
        }
        if (d == 32) break;
        if (lane >= d) {  /* (v, M) <- (v, M) after (pv, pM) */
            AFFINE(v, v, M, pv)
            MATMUL(M, M, pM)
        }
    }
    /* the lane's first chunk starts where the chunks before it take the call's start state */
    EACH(r) {
        v[r] = lane ? pv[r] : 0.0f;
        EACH(q) v[r] += (lane ? pM[r][q] : (float)(r == q)) * s0[q];
    }
    for (int c = c0; c < c1; c++) {
        if (!@FINAL@) EACH(r) init[((long long)c * @K@ + r) * B + b] = v[r];
        if (c == C - 1 && !@FINAL@) break;
        LOAD_CHUNK(c)
        AFFINE(v, cv, cM, v)
    }
    if (@FINAL@ && c0 < c1 && c1 == C) {  /* no pass 3: the lane with the last chunk stores the end state */
        @STORE@
    }
#undef SUMMARY
#undef EACH
#undef LOAD_CHUNK
#undef AFFINE
#undef MATMUL
}
"""


class ScanWriter:
    """The three kernels of one scannable block, written with the stage writer's spelling."""

    def __init__(self, writer, name, nodes, reads, writes, cells, affine):
        self.w, self.name, self.nodes, self.reads, self.writes = writer, name, nodes, reads, writes
        self.cells, self.affine, self.local = cells, affine, set(nodes)
        self.k = len(cells)
        self.frame = "frames - 1 - t" if writer.reverse else "t"
        self.invariant = self.time_invariant()

    def kernels(self) -> list[str]:
        """Passes 1 to 3; a block that writes no signals (gradient accumulators) has no pass
        3: pass 1 summarises every chunk and pass 2 stores the final state."""
        return self.pass1() + self.pass2() + (self.pass3() if self.writes else [])

    # ------------------------------------------------------------------ pieces
    def head(self, suffix, extra_args, last_chunk_too=True) -> list[str]:
        R = self.w.r.restrict
        args = [f"float *{R} mem", "const int frames", "const int B", "const int chunk", *extra_args]
        limit = "C" if last_chunk_too else "(C - 1)"
        return [
            f"/* scan pass {suffix[-1]} of {self.name}: {self.k} cell(s) */",
            f"{self.w.r.kernel_prefix} {self.name}_{suffix}({', '.join(args)}) {{",
            "    const int C = (frames + chunk - 1) / chunk;",
            "    const long long id = (long long)blockIdx.x * blockDim.x + threadIdx.x;",
            f"    if (id >= (long long){limit} * B) return;",
            "    const int b = (int)(id % B), c = (int)(id / B);",
            *self.w.uniforms(),
        ]

    def loop(self, body) -> list[str]:
        loads = [f"const float x{i} = a{i}[(long long)i * B + b];" for i in self.reads]
        return [
            f"    #pragma unroll {SCAN_UNROLL}",
            "    for (int t = c * chunk, t1 = min(frames, t + chunk); t < t1; t++) {",
            f"        const int i = {self.frame};",
            "        const long long at = (long long)i * B + b;",
            *("        " + line for line in loads + body),
            "    }",
        ]

    def body(self, with_writes) -> list[str]:
        L = []
        for n in self.nodes:
            nd = self.w.g.nodes[n]
            L.append(self.w.statement(nd, [self.w.ref(i, self.local) for i in nd.inputs]))
            if with_writes and n in self.writes:
                L.append(f"a{n}[at] = v{n};")
        return L

    def linear_positions(self, nd) -> tuple[int, ...]:
        """Argument positions of an affine node through which the state flows; the others are
        its coefficients."""
        if nd.op.name == "mul":  # linear in its state-dependent factor; the other is a coefficient
            return tuple(j for j, i in enumerate(nd.inputs) if i in self.local and self.affine[i])
        return LINEAR_ARGS[nd.op.name]

    def time_invariant(self) -> bool:
        """Whether every coefficient of the state map is a constant or a per-call invariant."""
        for n in self.nodes:
            nd = self.w.g.nodes[n]
            if not self.affine[n] or nd.op.name in CELL_OPS:
                continue
            lin = self.linear_positions(nd)
            for j, i in enumerate(nd.inputs):
                if j not in lin and self.w.g.nodes[i].op.name != "constant" and i not in self.w.st.invariant:
                    return False
        return True

    def homogeneous(self, state_only=False) -> list[str]:
        """The body with every state-independent term dropped: s -> M s (with state_only, the
        statements of state-independent nodes too: a time-invariant map needs none of them)."""
        L = []
        h = lambda i: f"h{i}" if i in self.local and self.affine[i] else "0.0f"
        for n in self.nodes:
            nd = self.w.g.nodes[n]
            name, args = nd.op.name, list(nd.inputs)
            s = f"s{nd.op.cell.id}" if name in CELL_OPS else None
            if not self.affine[n]:  # a coefficient (or a constant input to the state)
                if name == "history_write":
                    L.append(
                        f"{s} = 0.0f;" if state_only else f"float v{n} = {self.w.ref(args[0], self.local)}; {s} = 0.0f;"
                    )
                elif name != "grad_accum" and not state_only:
                    L.append(self.w.statement(nd, [self.w.ref(i, self.local) for i in args]))
            elif name == "history_read":
                L.append(f"float h{n} = {s};")
            elif name in ("history_write", "grad_accum"):
                L.append(f"float h{n} = {h(args[0])}; {s} {'=' if name == 'history_write' else '+='} h{n};")
            else:
                lin = self.linear_positions(nd)
                parts = [h(i) if j in lin else self.w.ref(i, self.local) for j, i in enumerate(args)]
                L.append(f"float h{n} = {self.w.r.pure_expr(nd, 'sf', parts)};")
        return L

    def fin(self, e, j, chunk="c") -> str:
        """Pass 1's output: (chunk, 1 + k, k, B); e = 0 is c, e = 1 + m is column m of M."""
        return f"fin[(((long long)({chunk}) * {self.k + 1} + {e}) * {self.k} + {j}) * B + b]"

    # ------------------------------------------------------------------ passes
    def pass1(self) -> list[str]:
        R = self.w.r.restrict
        reads = [f"const float *{R} a{i}" for i in self.reads]
        L = self.head("p1", [f"float *{R} fin", *reads], last_chunk_too=not self.writes)
        L += [f"    float s{cid} = 0.0f;" for cid in self.cells]
        L += self.loop(self.body(with_writes=False))
        L += [f"    {self.fin(0, j)} = s{cid};" for j, cid in enumerate(self.cells)]
        if self.invariant:
            return L + self.power() + ["}", ""]
        for m in range(self.k):
            L += [f"    s{cid} = {'1.0f' if j == m else '0.0f'};" for j, cid in enumerate(self.cells)]
            L += self.loop(self.homogeneous())
            L += [f"    {self.fin(1 + m, j)} = s{cid};" for j, cid in enumerate(self.cells)]
        return L + ["}", ""]

    def power(self) -> list[str]:
        """M = A^chunk for a time-invariant map: A column by column from one frame of the
        homogeneous body, then binary powering (the powers of A commute)."""
        k = self.k
        L = [f"    float A[{k}][{k}], M[{k}][{k}], T[{k}][{k}];"]
        for m in range(self.k):
            L += [f"    s{cid} = {'1.0f' if j == m else '0.0f'};" for j, cid in enumerate(self.cells)]
            L += ["    {", *("        " + line for line in self.homogeneous(state_only=True)), "    }"]
            L += [f"    A[{j}][{m}] = s{cid};" for j, cid in enumerate(self.cells)]
        each = f"for (int r = 0; r < {k}; r++) for (int q = 0; q < {k}; q++)"

        def product(x, y, into):  # into = x y, through T
            sums = f"{{ T[r][q] = 0.0f; for (int e = 0; e < {k}; e++) T[r][q] += {x}[r][e] * {y}[e][q]; }}"
            return f"{{ {each} {sums} {each} {into}[r][q] = T[r][q]; }}"

        L += [
            f"    {each} M[r][q] = r == q ? 1.0f : 0.0f;",
            "    for (int n = chunk; n > 0; n >>= 1) {",
            f"        if (n & 1) {product('A', 'M', 'M')}",
            f"        if (n > 1) {product('A', 'A', 'A')}",
            "    }",
        ]
        for m in range(self.k):
            L += [f"    {self.fin(1 + m, j)} = M[{j}][{m}];" for j in range(self.k)]
        return L

    def pass2(self) -> list[str]:
        """One warp per instance: each lane composes the maps of its run of chunks, a warp scan
        (shuffles) composes the lanes' maps, and each lane walks its run from the state the
        lanes before it reach. (One thread per instance walked all chunks, one dependent step
        each, waiting on each summary's load; now the loads are in flight together.)"""
        offsets = [self.w.layout.offsets[cid] for cid in self.cells]
        loads = "\n    ".join(f"s0[{j}] = mem[(long long){off} * B + b];" for j, off in enumerate(offsets))
        fill = {"@NAME@": self.name, "@KERNEL@": self.w.r.kernel_prefix, "@R@": self.w.r.restrict}
        fill.update({"@LOAD_S0@": loads, "@INV@": str(int(self.invariant)), "@K@": str(self.k)})
        fill["@FINAL@"] = str(int(not self.writes))
        fill["@STORE@"] = "\n        ".join(f"mem[(long long){off} * B + b] = v[{j}];" for j, off in enumerate(offsets))
        code = PASS2
        for key, value in fill.items():
            code = code.replace(key, value)
        return code.split("\n")

    def pass3(self) -> list[str]:
        R = self.w.r.restrict
        arrays = [f"const float *{R} a{i}" for i in self.reads] + [f"float *{R} a{n}" for n in self.writes]
        L = self.head("p3", [f"const float *{R} init", *arrays])
        L += [f"    float s{cid} = init[((long long)c * {self.k} + {j}) * B + b];" for j, cid in enumerate(self.cells)]
        L += self.loop(self.body(with_writes=True))
        L += ["    if (c == C - 1) {"]
        L += [f"        mem[(long long){self.w.layout.offsets[cid]} * B + b] = s{cid};" for cid in self.cells]
        return L + ["    }", "}", ""]
