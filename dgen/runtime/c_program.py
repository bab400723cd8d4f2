"""The C backend at run time: `CKernel` (same contract as interp.ReferenceKernel) and
`CProgram`, the `Program` that `dgen.compile(g, backend="c")` returns.

A kernel is compiled lazily per lane model: frames in lanes for memory shaped (M,), instances
in lanes for (M, B). With instances in lanes, memory and signals are padded to a multiple
of DGEN_W instances, (rows, Bp) instance-minor; views of such padded arrays (what CProgram
hands out) are used in place, anything else is copied in and out.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..program import Program
from ..render.c import HEAD as C_HEAD
from ..render.c import CSource, render_c
from . import cc
from .host_sdft import run_buffer_op
from .sources import source_signal

F32 = np.dtype(np.float32)
_STAGE_ARGS = [
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
    ctypes.c_long,
]


@dataclass
class _Build:
    csource: CSource
    functions: dict  # stage name -> ctypes function
    width: int  # DGEN_W of the compiled code


def _round_up(b: int, w: int) -> int:
    return -(-b // w) * w


def _covers(v, nbytes: int) -> bool:
    """Whether the contiguous buffer behind view `v` holds `nbytes` from v's first element."""
    root = v
    while isinstance(root.base, np.ndarray):
        root = root.base
    start, lo = v.__array_interface__["data"][0], root.__array_interface__["data"][0]
    return root.flags.c_contiguous and lo <= start and start + nbytes <= lo + root.nbytes


def _padded_view(v, rows: int, B: int, Bp: int):
    """(rows, Bp) array sharing memory with `v` if v is the [:, :B] view of one, else None."""
    if v.dtype != F32 or v.shape != (rows, B) or (rows > 1 and v.strides[0] != Bp * 4) or v.strides[1] != 4:
        return None
    if B == Bp and v.flags.c_contiguous:
        return v
    return as_strided(v, (rows, Bp), (Bp * 4, 4)) if _covers(v, rows * Bp * 4) else None


def _instance_major(v, frames: int, B: int, Bp: int):
    """(array (Bp, frames), row stride) sharing memory with `v` if v, shaped (frames, B), is
    the transposed view of Bp instance rows (what CProgram.channel_arrays hands out)."""
    if v.dtype != F32 or v.shape != (frames, B) or B < 2 or v.strides[0] != 4 or v.strides[1] % 4:
        return None
    R = v.strides[1] // 4
    if R < frames or not _covers(v, ((Bp - 1) * R + frames) * 4):
        return None
    return as_strided(v, (Bp, frames), (R * 4, 4)), R


class CKernel:
    """Runs one scheduled graph as compiled C: `execute(mem, frames, inputs, tape) -> values`.

    mem (M,) or (M, B); inputs: per channel (frames,) or (frames, B); tape: ref id -> signal.
    Returns node id -> (frames,) or (frames, B) for kept nodes, outputs and every value
    that crossed a stage. reverse=True runs sequential blocks from the last frame to the first.
    """

    def __init__(
        self,
        graph,
        schedule,
        layout,
        dtype=np.float32,
        reverse=False,
        keep=(),
        *,
        tile=None,
        flags=None,
        width=None,
        mvec=None,
    ):
        if np.dtype(dtype) != F32:
            raise ValueError(f"the C backend computes in float32, not {np.dtype(dtype)}")
        self.graph, self.schedule, self.layout = graph, schedule, layout
        self.reverse, self.keep, self.tile = reverse, tuple(keep), tile
        defines = {"DGEN_W": int(width)} if width else {}
        self.flags = tuple(flags) if flags is not None else cc.default_flags(mvec, defines)
        self._builds: dict[bool, _Build] = {}

    # ------------------------------------------------------------------ code
    def render(self, lanes: bool) -> CSource:
        return render_c(self.graph, self.schedule, self.layout, self.reverse, self.keep, lanes, self.tile)

    def build(self, lanes: bool) -> _Build:
        if lanes not in self._builds:
            csource = self.render(lanes)
            lib = cc.compile_library(csource.source, self.flags, head=C_HEAD)
            funcs = {}
            for st in csource.stages:
                fn = lib[st.name]
                fn.argtypes, fn.restype = _STAGE_ARGS, None
                funcs[st.name] = fn
            lib.dgen_width.restype = ctypes.c_int
            self._builds[lanes] = _Build(csource, funcs, int(lib.dgen_width()))
        return self._builds[lanes]

    @property
    def source(self) -> str:
        built = next(iter(self._builds.values()), None)
        return (built.csource if built else self.render(False)).source

    def padded_instances(self, B: int) -> int:
        """Instances per padded row with B instances in lanes (a multiple of DGEN_W)."""
        return _round_up(B, self.build(True).width)

    def bind(self, mem, frames: int, n_inputs: int, tape=None):
        """A `BoundKernel` (c_bound.py) running on `mem` in place: CProgram's memory, or
        (M,) / (M, Bp) float32 of the kernel's padded layout; buffers allocated once."""
        from .c_bound import BoundKernel

        lanes = mem.ndim == 2
        B = mem.shape[1] if lanes else 1
        pmem, copied = self._memory(mem, lanes, B, self.padded_instances(B) if lanes else 1)
        if copied:
            raise ValueError("bind() needs memory in the kernel's padded layout (it is used in place)")
        return BoundKernel(self, pmem, frames, B, n_inputs, tape)

    # ------------------------------------------------------------------ running
    def execute(self, mem, frames: int, inputs, tape=None, outputs=None) -> dict:
        """`outputs`, if given: a (Bp or 1, channels, frames) float32 array that output nodes
        write into directly (CProgram's result); rows beyond B are padding."""
        lanes = mem.ndim == 2
        built = self.build(lanes)
        B = mem.shape[1] if lanes else 1
        Bp = _round_up(B, built.width) if lanes else 1
        pmem, copied = self._memory(mem, lanes, B, Bp)
        if lanes:
            ins, istride = self._lane_inputs(inputs, frames, B, Bp)
        else:
            ins = [self._signal(x, frames, lanes, B, Bp, f"input {c}") for c, x in enumerate(inputs)]
            istride = frames
        tp = {k: self._signal(v, frames, lanes, B, Bp, f"tape {k}") for k, v in (tape or {}).items()}
        values = self.run(built, pmem, frames, ins, tp, B, Bp, outputs, istride)
        if copied:
            mem[...] = pmem[:, :B] if lanes else pmem
        return {k: (v[:, :B] if lanes else v) for k, v in values.items()}

    def _memory(self, mem, lanes, B, Bp):
        M = self.layout.size
        if mem.shape[0] != M:
            raise ValueError(f"memory has {mem.shape[0]} rows; this graph needs {M}")
        if not lanes:
            ok = mem.dtype == F32 and mem.flags.c_contiguous
            return (mem, False) if ok else (np.ascontiguousarray(mem, F32), True)
        view = _padded_view(mem, M, B, Bp)
        if view is not None:
            return view, False
        pmem = np.zeros((M, Bp), F32)
        pmem[:, :B] = mem
        return pmem, True

    def _lane_inputs(self, inputs, frames, B, Bp):
        """Graph inputs as instance-major (Bp, frames) arrays with one common row stride:
        views when they are CProgram's, else copied into one (Bp, channels, frames) block."""
        inputs = [np.asarray(x) for x in inputs]
        views = [_instance_major(x, frames, B, Bp) for x in inputs]
        if inputs and all(v is not None for v in views) and len({r for _, r in views}) == 1:
            return [v for v, _ in views], views[0][1]
        block = np.zeros((Bp, len(inputs), frames), F32)
        for c, x in enumerate(inputs):
            if x.shape != (frames, B):
                raise ValueError(f"input {c} has shape {x.shape}; the kernel runs {(frames, B)}")
            block[:B, c] = x.T
        return [block[:, c] for c in range(len(inputs))], len(inputs) * frames

    def _signal(self, x, frames, lanes, B, Bp, what):
        x = np.asarray(x)
        want = (frames, B) if lanes else (frames,)
        if x.shape[:1] != (frames,) or x.shape[1:] != want[1:]:
            raise ValueError(f"{what} has shape {x.shape}; the kernel runs {want}")
        if not lanes:
            return x if x.dtype == F32 and x.flags.c_contiguous else np.ascontiguousarray(x, F32)
        view = _padded_view(x, frames, B, Bp)
        if view is not None:
            return view
        out = np.zeros((frames, Bp), F32)
        out[:, :B] = x
        return out

    def run(self, built, pmem, frames, ins, tape, B, Bp, outputs=None, istride=0) -> dict:
        """Run every step on padded arrays (inputs instance-major with lanes, `istride` apart);
        returns node id -> padded signal (frames, Bp)."""
        lanes, values = built.csource.lanes, {}
        shape = (frames, Bp) if lanes else (frames,)
        if outputs is None:
            chans = [s.key for st in built.csource.stages for s in st.slots if s.kind == "output"]
            outputs = np.empty((Bp, max(chans, default=-1) + 1, frames), F32)
        for step in built.csource.steps:
            if step.kind == "buffer":
                self._buffer_block(step.block, pmem, values, ins, tape, shape, B, lanes)
                continue
            st = step.stage
            ptrs = (ctypes.c_void_p * max(1, len(st.slots)))()
            for k, s in enumerate(st.slots):
                if s.kind == "out":
                    values[s.node] = arr = np.empty(shape, F32)
                elif s.kind == "output":
                    arr = outputs[0, s.key]
                    values[s.node] = outputs[:, s.key].T if lanes else arr
                else:
                    arr = source_signal(s.kind, s.key, ins, tape, values, s.node)
                ptrs[k] = arr.ctypes.data
            built.functions[st.name](
                pmem.ctypes.data, ptrs, frames, Bp // built.width if lanes else 1, istride, outputs.shape[1] * frames
            )
        for i in self.keep:
            if i not in values:
                values[i] = self._whole(i, pmem, values, ins, tape, shape, B, lanes, padded=True)
        return values

    def _whole(self, i, pmem, values, ins, tape, shape, B, lanes, padded=False):
        """Node i as a whole signal (buffer-op operands and kept sources)."""
        nd = self.graph.nodes[i]
        name = nd.op.name
        if i in values:
            v = values[i]
        elif name == "constant":
            v = np.full(shape, nd.op.value, F32)
        elif name == "param":
            v = np.broadcast_to(pmem[self.layout.offsets[nd.op.cell.id]], shape).copy()
        elif name in ("input", "tape"):
            key = nd.op.channel if name == "input" else nd.op.ref_id
            v = source_signal(name, key, ins, tape, values, i)
            if name == "input" and lanes:
                v = v.T  # instance-major rows -> (frames, Bp)
        else:
            raise RuntimeError(f"node {i} ({name}) has no whole-signal value in the C kernel (a dgen bug)")
        return v if padded or not lanes else v[:, :B]

    def _buffer_block(self, block, pmem, values, ins, tape, shape, B, lanes):
        mview = pmem[:, :B] if lanes else pmem
        for n in block.nodes:
            nd = self.graph.nodes[n]
            args = [self._whole(j, pmem, values, ins, tape, shape, B, lanes) for j in nd.inputs]
            base = self.layout.offsets[nd.op.cell.id] if nd.op.cell is not None else 0
            with np.errstate(all="ignore"):
                out = np.asarray(run_buffer_op(nd.op, mview, base, *args), F32)
            if lanes:
                padded = np.zeros(shape, F32)
                padded[:, :B] = out
                out = padded
            values[n] = out


class CProgram(Program):
    """A compiled C program (float32). `source` is the generated C."""

    backend = "c"
    dtype = F32

    def __init__(self, plan, frame_count, instances=1, keep=(), **kernel_options):
        super().__init__(plan, frame_count, instances)
        self.kernel = CKernel(plan.graph, plan.schedule, plan.layout, F32, plan.reverse, keep, **kernel_options)
        self.lanes = self.instances > 1
        built = self.kernel.build(self.lanes)  # compile now: errors show at compile()
        self._source = built.csource.source
        self.padded_instances = _round_up(self.instances, built.width) if self.lanes else 1
        if self.lanes:
            padded = np.zeros((self.mem.shape[0], self.padded_instances), F32)
            padded[:, : self.instances] = self.mem
            self.mem = padded[:, : self.instances]

    def mem_view(self):
        """(M,) for one instance, (M, B) for more; shares self.mem."""
        return self.mem[:, 0] if not self.lanes else self.mem

    def channel_arrays(self, x):
        """(B, C, N) user inputs -> per channel (N,), or (N, B) transposed views of the
        (Bp, C, N) instance-major block that the kernel reads in place."""
        if not self.lanes:
            return [x[0, c] for c in range(x.shape[1])]
        B, C, N = x.shape
        if B != self.padded_instances:
            padded = np.zeros((self.padded_instances, C, N), F32)
            padded[:B] = x
            x = padded
        return [x[:B, c].T for c in range(C)]

    def execute_values(self, x, frames, tape=None, outputs=None) -> dict:
        return self.kernel.execute(self.mem_view(), frames, self.channel_arrays(x), tape, outputs)

    def _execute(self, x, frames):
        out = np.zeros((self.padded_instances, self.n_outputs, frames), F32)
        self._write_outputs(x, frames, out)
        return out[: self.instances]

    def _execute_into(self, x, frames, out):
        """The kernel writes Bp instance rows: straight into `out` when B is a multiple of
        DGEN_W (or 1), else into a padded block copied over (B rows)."""
        if out.shape[0] == self.padded_instances:
            self._write_outputs(x, frames, out)
            for ch in set(range(self.n_outputs)) - set(self.graph.outputs()):
                out[:, ch] = 0  # a channel no output node writes (out may hold anything)
        else:
            out[...] = self._execute(x, frames)

    def _write_outputs(self, x, frames, out):
        # output nodes write straight into `out` (instance-major rows, padded to Bp)
        values = self.execute_values(x, frames, outputs=out)
        for ch, nd in self.graph.outputs().items():
            v = values[nd.id]
            if not np.may_share_memory(v, out):  # an output node other nodes also read
                out[: self.instances, ch] = v.T if self.lanes else v


_KERNEL_OPTIONS = ("tile", "flags", "width", "mvec")


def c_program(graph, frame_count=4096, backwards=False, instances=1, **options):
    """`dgen.compile(..., backend="c")`. Options: tile (frames per tile), width (SIMD lanes,
    DGEN_W), mvec (use libmvec: default where available), flags (replace the compiler flags),
    dtype (float32 only). phasor, accum and latch are always expanded (`expand` is ignored)."""
    from ..pipeline import plan

    kopts = {k: options.pop(k) for k in _KERNEL_OPTIONS if k in options}
    dtype = np.dtype(options.pop("dtype", F32))
    options.pop("expand", None)  # the C backend always expands phasor/accum/latch
    if dtype != F32:
        raise ValueError(f"the C backend computes in float32; dtype={dtype} is not supported")
    if options:
        raise TypeError(f"unknown option(s) for the C backend: {sorted(options)}")
    forward = CProgram(plan(graph, expand=True), frame_count, instances, **kopts)
    if not backwards:
        return forward
    try:
        from ..train.program import training_program
    except ImportError as e:  # the training program is written separately
        raise NotImplementedError(f"backwards=True on the C backend needs dgen.train.program ({e})") from e

    def factory(p, keep):
        return CKernel(p.graph, p.schedule, p.layout, F32, p.reverse, keep, **kopts)

    return training_program(graph, frame_count, instances, kernel_factory=factory, forward=forward)
