"""CUDA renderer: a scheduled graph -> CUDA C source (compiled at run time by NVRTC).

The stages are the C backend's (`cstyle.split_stages`); their blocks become kernels
(`cuda_fuse.kernel_units`: vector blocks, feed-forward delay chains and, where sums may be
reassociated, gradient accumulators fused; small prologues folded into the sequential block
that alone reads them):
- vector kernel: a 2-D grid of (instance, frame lane) threads; each thread runs frames
  lane, lane + lanes, ... of its instance, so the per-call invariants (filter coefficients
  from parameters) are computed once per thread, not per frame;
- sequential kernel: one thread per instance, frames in a loop (last to first for backward
  graphs), cell state (history, gradient accumulators) in registers for the whole loop.
Memory is (cells, B) float32, instance-minor; every signal that crosses kernels is a global
(frames, B) array; neighbouring threads of a vector kernel touch neighbouring elements
(instance fastest, then frame lane), so every access is coalesced. Kernels take
    (float *mem, int frames, int B, <read arrays...>, <written arrays...>)
in the order `CudaLaunch.reads + CudaLaunch.writes` (vector kernels with accumulators, and
their `_end` kernels, then take `float *part, int nlanes`: the per-lane sums). Arithmetic is IEEE float32 without
contraction (NVRTC --fmad=false) and without flushing denormals, so pure arithmetic matches
the float32 reference bit for bit; math functions are CUDA's (a few ulp).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis import SEQUENTIAL, VECTOR
from .cstyle import CStyleRenderer, Step, float_literal, op_comment, split_stages
from .cuda_fuse import FusedFrame, kernel_units
from .cuda_prelude import PRELUDE
from .cuda_scan import ScanWriter, scan_cells

# NVRTC options: no FMA contraction, IEEE division and sqrt, denormals kept (the defaults
# except fmad): what the reference interpreter's float32 mode computes.
NVRTC_OPTIONS = ("--fmad=false", "--std=c++17")
VECTOR_THREADS = 256
VECTOR_LANES = 1 << 20  # threads of a vector kernel at most (~4 per core slot of an H100/H200)
SUM_LANES = 256  # frame lanes at most of a kernel with accumulators: `_end` adds this many sums


def vector_grid(frames: int, B: int, most: int = VECTOR_LANES) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) of a vector kernel: x over instances, y over frame lanes. A block is
    VECTOR_THREADS threads, instance-fastest (one row of up to 256 instances; small B stacks
    several frame lanes per block, so a warp still reads contiguous memory). Frame lanes stop
    at VECTOR_LANES threads in all: beyond that each thread runs more frames, amortising
    its invariants, instead of queueing more blocks. `most`: the frame lanes at most."""
    tx = min(B, VECTOR_THREADS)
    ty = max(1, VECTOR_THREADS // tx)
    lanes = max(1, min(frames, most, VECTOR_LANES // B))
    return (-(-B // tx), -(-lanes // ty)), (tx, ty)


def tile_frames(n_reads: int) -> int:
    """Frames per register tile of a sequential kernel (CudaRenderer.frame_tiles): 16 for
    few inputs, down to 4 for many (two tiles of every input live in registers)."""
    return 16 if n_reads <= 3 else 8 if n_reads <= 6 else 4


@dataclass(frozen=True)
class CudaLaunch:
    """One kernel: its name, block kind, and the node ids of its array arguments."""

    name: str
    kind: str  # "vector" or "sequential"
    reads: tuple[int, ...]  # arrays read (input/tape slots through their alias node)
    writes: tuple[int, ...]  # arrays written: values used by other blocks, steps or the caller
    scan: int = 0  # cells of a sequential block that also has chunked-scan kernels (cuda_scan.py)
    chains: int = 1  # independent chains of a sequential block: launched as gridDim.y
    end: bool = False  # a vector kernel with feed-forward cells or accumulators: `_end` after it
    accs: int = 0  # accumulators of a vector kernel: it takes (part, nlanes) after its arrays

    @property
    def pass3(self) -> bool:
        """Whether a scan has pass 3: without signals to write, pass 2 stores the end state."""
        return bool(self.writes)

    def names(self) -> list[str]:
        passes = (1, 2, 3) if self.pass3 else (1, 2)
        return [self.name] + [f"{self.name}_p{k}" for k in passes if self.scan] + [f"{self.name}_end"] * self.end


@dataclass(frozen=True)
class CudaSource:
    source: str
    steps: tuple[Step, ...]
    launches: dict  # stage name -> tuple of CudaLaunch, in run order
    reverse: bool

    @property
    def stages(self):
        return [s.stage for s in self.steps if s.kind == "stage"]

    def kernel_names(self) -> list[str]:
        return [name for ls in self.launches.values() for k in ls for name in k.names()]


class CudaRenderer(CStyleRenderer):
    name = "CUDA"
    restrict = "__restrict__"
    kernel_prefix = 'extern "C" __global__ void'
    # memory ops take the instance stride (B) as in the C backend's lane model
    state_code = {**CStyleRenderer.state_code}

    def render(self, graph, schedule, layout, reverse=False, keep=(), reassociate=False) -> CudaSource:
        """reassociate: sums over frames may be added in another order (gradient accumulators
        summed per frame lane); programs that promise the frame loop's exact result do not."""
        self.check(graph)
        steps = split_stages(graph, schedule, keep)
        head = [
            f"/* generated by dgen: {len(graph)} nodes, {len(steps)} step(s), CUDA"
            f"{', frames reversed' if reverse else ''} */",
            PRELUDE,
        ]
        body, launches = [], {}
        for s in steps:
            if s.kind != "stage":
                continue
            writer = _StageWriter(self, graph, layout, s.stage, reverse, reassociate)
            code, launches[s.stage.name] = writer.kernels()
            body += code
        return CudaSource("\n".join(head + body) + "\n", steps, launches, reverse)


class _StageWriter:
    """Writes the kernels of one stage, one per block that computes anything."""

    def __init__(self, renderer, graph, layout, stage, reverse, reassociate):
        self.r, self.g, self.layout, self.st, self.reverse = renderer, graph, layout, stage, reverse
        self.reassociate = reassociate
        self.outs = {s.node for s in stage.slots if stage.written(s)}
        self.consumers = {}
        for nd in graph.nodes:
            for i in nd.inputs:
                self.consumers.setdefault(i, []).append(nd.id)

    def kernels(self) -> tuple[list[str], tuple[CudaLaunch, ...]]:
        code, launches = [], []
        for k, unit in enumerate(kernel_units(self.g, self.st, self.reassociate)):
            name = f"{self.st.name}_b{k}"
            made = self.vector_kernel(name, unit) if unit.kind == VECTOR else self.sequential_kernel(name, unit)
            code += made[0]
            launches.append(made[1])
        return code, tuple(launches)

    def src(self, i) -> int:
        return self.st.alias.get(i, i)

    def writes_of(self, nodes) -> list[int]:
        """Values the caller or another kernel reads: written to their arrays."""
        local = set(nodes)
        return [n for n in nodes if n in self.outs or any(c not in local for c in self.consumers.get(n, ()))]

    def vector_kernel(self, name, unit):
        """A vector run: one thread per (instance, frame lane); feed-forward history reads
        recomputed from earlier frames (cuda_fuse.py); `_end` stores their end state and adds
        the accumulators' per-lane sums (in `part`, `nlanes` rows each) to their cells."""
        nodes, frame = unit.nodes, FusedFrame(self, unit)
        reads, writes = self.reads_of(nodes), self.writes_of(nodes)
        extra = [f"float *{self.r.restrict} part", "const int nlanes"] if unit.accs else []
        starts = [f"    const float s{c} = mem[(long long){self.layout.offsets[c]} * B + b];" for c in unit.cells]
        L = self.head(name, VECTOR, len(nodes), reads, writes, False, extra) + starts
        L += [f"    float r{c} = 0.0f;" for c in unit.accs]
        L += self.frame_lanes(frame.code(nodes, reads) + [f"a{n}[at] = v{n};" for n in writes])
        L += [f"    part[((long long){j} * nlanes + lane) * B + b] = r{c};" for j, c in enumerate(unit.accs)]
        L += ["}", ""]
        end = bool(unit.cells or unit.accs)
        if end:
            L += self.end_kernel(f"{name}_end", unit, frame, reads, writes, extra)
        return L, CudaLaunch(name, VECTOR, tuple(reads), tuple(writes), end=end, accs=len(unit.accs))

    def end_kernel(self, name, unit, frame, reads, writes, extra) -> list[str]:
        """A warp per instance (blockIdx.y: which accumulator): the accumulator's lane sums,
        each warp lane adding every 32nd in order and a shuffle tree the lanes' (the same
        result on every run); then lane 0 of row 0 stores the feed-forward cells' end state
        (their writes at the last frame run)."""
        ends, at = frame.writes, lambda c: f"mem[(long long){self.layout.offsets[c]} * B + b]"
        L = self.head(name, "end state of vector", len(ends) + len(unit.accs), reads, writes, "warp", extra)
        for j, c in enumerate(unit.accs):
            L += [
                f"    if (blockIdx.y == {j}) {{",
                "        float s = 0.0f;",
                f"        for (int l = w; l < nlanes; l += 32) s += part[((long long){j} * nlanes + l) * B + b];",
                "        for (int d = 16; d > 0; d >>= 1) s += __shfl_down_sync(0xffffffffu, s, d);",
                f"        if (w == 0) {at(c)} = {at(c)} + s;",
                "    }",
            ]
        if not unit.cells:
            return L + ["}", ""]
        L += ["    if (blockIdx.y != 0 || w != 0 || frames <= 0) return;"]
        L += [f"    const float s{c} = {at(c)};" for c in unit.cells]
        L += [f"    const int i = {'0' if self.reverse else 'frames - 1'};"]
        L += ["    const long long at = (long long)i * B + b;"]
        L += ["    " + line for line in frame.code(list(ends.values()), reads, sums=False)]
        L += [f"    {at(c)} = v{w};" for c, w in ends.items()]
        return L + ["}", ""]

    def sequential_kernel(self, name, unit):
        nodes = list(unit.nodes)
        reads, writes, cells = self.reads_of(nodes), self.writes_of(nodes), self.cells_of(nodes)
        L = self.head(name, SEQUENTIAL, len(nodes), reads, writes, True)
        groups = [list(c) for c in unit.chains]
        if len(groups) > 1:  # independent chains: one per blockIdx.y, each a shorter instruction stream
            L += ["    switch (blockIdx.y) {"]
            for j, group in enumerate(groups):
                walk = ["    " + line for line in self.walk(group, writes)]
                L += [f"    case {j}: {{", *walk, "        break;", "    }"]
            L += ["    }"]
        else:
            L += self.walk(nodes, writes)
        L += ["}", ""]
        affine = scan_cells(self.g, nodes, cells)
        if affine is not None:
            L += ScanWriter(self, name, nodes, reads, writes, cells, affine).kernels()
        scan = len(cells) if affine else 0
        return L, CudaLaunch(name, SEQUENTIAL, tuple(reads), tuple(writes), scan, max(1, len(groups)))

    def reads_of(self, nodes) -> list[int]:
        """Arrays the nodes read: values from other blocks or steps (through their alias)."""
        local, skip, reads = set(nodes), self.st.invariant, []
        for n in nodes:
            for i in self.g.nodes[n].inputs:
                if i not in local and i not in skip and self.src(i) not in reads:
                    reads.append(self.src(i))
        return reads

    def cells_of(self, nodes) -> list[int]:
        ids = {self.g.nodes[n].op.cell.id for n in nodes if self.g.nodes[n].op.cell is not None}
        return [c for c in self.st.cells if c in ids]

    def walk(self, nodes, writes) -> list[str]:
        """The nodes over every frame: their cells loaded, the frames, the cells stored."""
        reads, cells = self.reads_of(nodes), self.cells_of(nodes)
        L = [f"    float s{c} = mem[(long long){self.layout.offsets[c]} * B + b];" for c in cells]
        inner = self.body(nodes, reads, [n for n in writes if n in set(nodes)])
        L += self.frame_tiles(reads, inner)
        return L + [f"    mem[(long long){self.layout.offsets[c]} * B + b] = s{c};" for c in cells]

    def head(self, name, kind, n_nodes, reads, writes, seq, extra=()) -> list[str]:
        """Signature, thread index and uniforms. seq: one thread per instance b; False: a
        vector kernel's (b, frame lane); "warp": a warp per instance (lane w)."""
        R = self.r.restrict
        args = [f"float *{R} mem", "const int frames", "const int B"]
        args += [f"const float *{R} a{i}" for i in reads] + [f"float *{R} a{n}" for n in writes] + list(extra)
        L = [f"/* {kind} block: {n_nodes} node(s) */", f"{self.r.kernel_prefix} {name}({', '.join(args)}) {{"]
        if seq == "warp":  # b is the same across a warp: whole warps leave
            L += ["    const long long id = (long long)blockIdx.x * blockDim.x + threadIdx.x;"]
            L += ["    const int b = (int)(id >> 5), w = (int)(id & 31);", "    if (b >= B) return;"]
        else:
            L += ["    const int b = blockIdx.x * blockDim.x + threadIdx.x;", "    if (b >= B) return;"]
        if not seq:
            L += ["    const int lane = blockIdx.y * blockDim.y + threadIdx.y, lanes = gridDim.y * blockDim.y;"]
        return L + self.uniforms()

    def body(self, nodes, reads, writes) -> list[str]:
        """One frame of a sequential kernel: the inputs (from register tiles), every node, the writes."""
        inner, local = [f"const float x{i} = x{i}_[k];" for i in reads], set(nodes)
        for n in nodes:
            nd = self.g.nodes[n]
            inner.append(self.statement(nd, [self.ref(i, local) for i in nd.inputs]) + f" /* {op_comment(nd.op)} */")
            if n in writes:
                inner.append(f"a{n}[at] = v{n};")
        return inner

    @staticmethod
    def frame_lanes(body) -> list[str]:
        """The frames of a vector kernel's thread: its lane's, `lanes` apart (vector_grid)."""
        L = ["    #pragma unroll 4", "    for (int i = lane; i < frames; i += lanes) {"]
        L += ["        const long long at = (long long)i * B + b;", *("        " + line for line in body)]
        return L + ["    }"]

    def frame_tiles(self, reads, body) -> list[str]:
        """The frame loop of a sequential kernel in tiles of T frames, software-pipelined: the
        next tile's inputs are loaded into registers (independent loads, all in flight at once)
        while the recurrence runs over the current tile. Without this each frame waits for its
        own memory round trip: one thread's frames are B floats apart, so at large B every frame
        is a DRAM access (10x slower than B = 1). T shrinks as the inputs grow (registers)."""
        frame = "frames - 1 - (j)" if self.reverse else "(j)"
        if not reads:  # nothing to load ahead: a plain loop
            return [
                "    #pragma unroll 8",
                "    for (int t = 0; t < frames; t++) {",
                f"        const int i = {frame.replace('j', 't')};",
                "        const long long at = (long long)i * B + b;",
                *("        " + line for line in body),
                "    }",
            ]
        T = tile_frames(len(reads))
        L = [f"    float {', '.join(f'x{i}_[{T}], x{i}_next[{T}]' for i in reads)};"]
        L += self.tile_loads(reads, T, frame, "x{i}_", "0")
        L += [f"    for (int t = 0; t < frames; t += {T}) {{"]
        L += ["    " + line for line in self.tile_loads(reads, T, frame, "x{i}_next", f"t + {T}")]
        L += [
            "        #pragma unroll",
            f"        for (int k = 0; k < {T}; k++) {{",
            "            if (t + k >= frames) break;",
            f"            const int i = {frame.replace('j', 't + k')};",
            "            const long long at = (long long)i * B + b;",
        ]
        L += ["            " + line for line in body] + ["        }"]
        L += ["        #pragma unroll", f"        for (int k = 0; k < {T}; k++) {{"]
        L += [f"            x{i}_[k] = x{i}_next[k];" for i in reads] + ["        }"]
        return L + ["    }"]

    @staticmethod
    def tile_loads(reads, T, frame, arrays, t) -> list[str]:
        """A tile's loads into register arrays; frames past the end are not read."""
        out = [
            "    #pragma unroll",
            f"    for (int k = 0; k < {T}; k++) {{",
            f"        const int i = {frame.replace('j', f'{t} + k')};",
            f"        if ({t} + k < frames) {{",
        ]
        out += [f"            {arrays.format(i=i)}[k] = a{i}[(long long)i * B + b];" for i in reads]
        return out + ["        }", "    }"]

    def uniforms(self) -> list[str]:
        """Params and per-call invariants (the compiler drops the ones a kernel does not use)."""
        L = []
        for i in self.st.params:
            at = self.layout.offsets[self.g.nodes[i].op.cell.id]
            L.append(f"    const float p{i} = mem[(long long){at} * B + b];")
        for n in self.st.uniforms:
            nd = self.g.nodes[n]
            expr = self.r.pure_expr(nd, "sf", [self.ref(i, ()) for i in nd.inputs])
            L.append(f"    const float u{n} = {expr}; /* {op_comment(nd.op)} */")
        return L

    def ref(self, i, local) -> str:
        op = self.g.nodes[i].op
        if op.name == "constant":
            return float_literal(op.value)
        if i in self.st.invariant:
            return f"p{i}" if op.name == "param" else f"u{i}"
        return f"v{i}" if i in local else f"x{self.src(i)}"

    def statement(self, nd, args) -> str:
        if self.r.renders(nd.op) == "state":
            base = f"mem + (long long){self.layout.offsets[nd.op.cell.id]} * B + b"
            return self.r.state_stmt(nd, "float", "sf", args, base, ", B")
        return f"float v{nd.id} = {self.r.pure_expr(nd, 'sf', args)};"


def render_cuda(graph, schedule, layout, reverse=False, keep=(), reassociate=False) -> CudaSource:
    return CudaRenderer().render(graph, schedule, layout, reverse, keep, reassociate)
