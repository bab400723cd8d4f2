"""The CUDA backend at run time: `CudaKernel` (the kernel contract of interp.ReferenceKernel),
`CudaProgram` (what `dgen.compile(g, backend="cuda")` returns) and `CudaTrainingProgram`.

Kernels are CUDA C rendered by render/cuda.py and compiled by NVRTC through
`cupy.RawModule`; modules are cached per process by source hash (and by CuPy on disk).
CuPy is imported lazily: `import dgen` needs neither CuPy nor a GPU.

Where the data lives (docs/cuda.md):
- a CudaProgram's state memory (cells, B) stays on the GPU between runs and training steps;
  `reset()` and parameter values are written there (one small copy per parameter per run);
- `run()` copies its inputs up and its outputs down; `execute_values` keeps them on the GPU;
- training: tapes, the backward memory and every intermediate signal stay on the GPU; one
  step copies back the loss per instance and the gradient rows only;
- buffer ops (spectral_loss and its gradient) run in NumPy on the host: their operands are
  copied down and their results up (the only large copies of a training step).
A kernel given NumPy arrays (the generic contract) copies them up and back itself.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import BackendUnavailable, RunInputError
from ..program import Program
from ..render.cuda import NVRTC_OPTIONS, SUM_LANES, VECTOR_LANES, CudaSource, render_cuda, vector_grid
from .cuda_buffer import GPU_BUFFER_OPS
from .sources import source_signal

F32 = np.dtype(np.float32)
_MODULES: dict[str, object] = {}  # sha256 of source -> cupy.RawModule
_CUPY = []  # the cupy module once a GPU was found


def require_cupy():
    """The cupy module, once a GPU is known to be usable; else BackendUnavailable saying why."""
    if _CUPY:
        return _CUPY[0]
    try:
        import cupy
    except ImportError as e:
        raise BackendUnavailable(
            f"the CUDA backend needs CuPy (pip install cupy-cuda13x or cupy-cuda12x to match your CUDA driver): {e}"
        ) from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # cudaErrorNoDevice, driver missing or too old
        raise BackendUnavailable(f"the CUDA backend found no usable NVIDIA GPU: {e}") from e
    if count < 1:
        raise BackendUnavailable("the CUDA backend found no NVIDIA GPU (CuPy reports 0 devices)")
    _CUPY.append(cupy)
    return cupy


def compile_module(source: str):
    """NVRTC-compile `source` once per process (CuPy also caches the binary on disk)."""
    cp = require_cupy()
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _MODULES:
        module = cp.RawModule(code=source, options=NVRTC_OPTIONS)
        module.compile()  # errors now, naming the line, not at the first launch
        _MODULES[key] = module
    return _MODULES[key]


# chunks x instances a scan aims for. Tuned on an H200 with benchmarks/cuda_scan_chunks.py
# (ctx.train, 4096 frames): 64-frame chunks were best at B = 1, 64 and 1024 (biquad fit 0.89 ->
# 0.79 ms at B = 1024 against 128-frame chunks), and scanning still beat one thread per
# instance at B = 4096 (2.5 -> 2.0 ms).
SCAN_THREADS = 262144
MIN_CHUNK = 64  # frames; shorter chunks lengthen pass 2's walk over them (32: 5-15% slower)


def scan_chunk(frames: int, B: int, cells: int = 1) -> int:
    """Frames per chunk of a scanned sequential block of `cells` cells, or `frames` (no scan).
    A scan's latency is about (cells + 2) chunk lengths plus the walk over the chunks, so it
    needs at least 2 (cells + 2) chunks to halve the loop's; chunks have at least MIN_CHUNK frames and
    chunks x B stays near SCAN_THREADS (beyond that B alone fills the GPU)."""
    chunks = min(frames // MIN_CHUNK, SCAN_THREADS // max(B, 1))
    return frames if chunks < 2 * (cells + 2) else -(-frames // chunks)


def sequential_threads(B: int) -> int:
    """Threads per block of a one-thread-per-instance kernel: small blocks while B is small,
    so the instances spread over all multiprocessors."""
    return 32 if B <= 4096 else 128


def cp_to_host(x):
    """NumPy array of x (a CuPy array is copied down)."""
    return x if isinstance(x, np.ndarray) else x.get()


class CudaKernel:
    """Runs one scheduled graph on the GPU: `execute(mem, frames, inputs, tape) -> values`.

    mem (M,) or (M, B); inputs per channel (frames,) or (frames, B); tape: ref id -> signal.
    CuPy arrays are used in place and values come back as CuPy arrays; NumPy arrays are copied
    up, and mem and the values copied back. Returns node id -> signal for kept nodes, outputs
    and every value that crossed a stage. reverse=True runs sequential blocks last frame first.
    """

    def __init__(self, graph, schedule, layout, dtype=F32, reverse=False, keep=(), scan=False):
        if np.dtype(dtype) != F32:
            raise ValueError(f"the CUDA backend computes in float32, not {np.dtype(dtype)}")
        self.graph, self.schedule, self.layout = graph, schedule, layout
        self.reverse, self.keep, self.scan = reverse, tuple(keep), scan
        self.csource: CudaSource = render_cuda(graph, schedule, layout, reverse, self.keep, reassociate=scan)
        self._functions = None

    @property
    def source(self) -> str:
        return self.csource.source

    def build(self) -> dict:
        if self._functions is None:
            module = compile_module(self.csource.source)
            self._functions = {name: module.get_function(name) for name in self.csource.kernel_names()}
        return self._functions

    # ------------------------------------------------------------------ running
    def execute(self, mem, frames: int, inputs, tape=None, override=None) -> dict:
        """override: buffer-op node id -> fn(values, cell rows, *operands) computing that node
        instead of its op (cuda_training.py fuses a training step's spectral loss this way)."""
        cp = require_cupy()
        host = isinstance(mem, np.ndarray)
        one = mem.ndim == 1
        M = self.layout.size
        if mem.shape[0] != M:
            raise ValueError(f"memory has {mem.shape[0]} rows; this graph needs {M}")
        B = 1 if one else mem.shape[1]
        dmem = cp.ascontiguousarray(cp.asarray(mem, F32)).reshape(M, B)
        if not host and M and dmem.data.ptr != mem.data.ptr:
            raise ValueError("CudaKernel needs a contiguous float32 CuPy memory array to update in place")
        sig = lambda x, what: self._signal(cp, x, frames, B, what)
        ins = [sig(x, f"input {c}") for c, x in enumerate(inputs)]
        tp = {k: sig(v, f"tape {k}") for k, v in (tape or {}).items()}
        values = self.run(cp, dmem, frames, B, ins, tp, override or {})
        if host:
            mem[...] = cp.asnumpy(dmem).reshape(mem.shape)
        shape = (frames,) if one else (frames, B)
        return {k: (cp.asnumpy(v) if host else v).reshape(shape) for k, v in values.items()}

    @staticmethod
    def _signal(cp, x, frames, B, what):
        if x.shape[0] != frames or int(np.prod(x.shape[1:], dtype=int)) != B or x.ndim > 2:
            raise ValueError(f"{what} has shape {x.shape}; the kernel runs ({frames}, {B})")
        return cp.ascontiguousarray(cp.asarray(x, F32)).reshape(frames, B)

    def run(self, cp, dmem, frames, B, ins, tape, override) -> dict:
        """Every step in order on (frames, B) device arrays; returns node id -> signal."""
        functions, values = self.build(), {}
        for step in self.csource.steps:
            if step.kind == "buffer":
                self._buffer_block(cp, step.block, dmem, values, ins, tape, frames, B, override)
                continue
            st = step.stage
            arrays = {}
            for s in st.slots:
                if st.written(s):  # "out", or "output": kept by node id here too
                    values[s.node] = arrays[s.node] = cp.empty((frames, B), F32)
                else:
                    arrays[s.node] = source_signal(s.kind, s.key, ins, tape, values, s.node)
            launches = self.csource.launches[st.name]
            for n in {n for launch in launches for n in launch.writes}:  # values crossing kernels
                if n not in arrays:
                    arrays[n] = cp.empty((frames, B), F32)
            fb = (np.int32(frames), np.int32(B))
            for launch in launches:
                args = (dmem, *fb, *(arrays[i] for i in launch.reads + launch.writes))
                chunk = scan_chunk(frames, B, launch.scan) if launch.scan and self.scan else frames
                if chunk < frames:
                    self._scan(functions, launch, args, chunk, frames, B)
                else:
                    self._launch(cp, functions, launch, args, frames, B)
        for i in self.keep:
            if i not in values:
                values[i] = self._whole(cp, i, dmem, values, ins, tape, frames, B)
        return values

    @staticmethod
    def _launch(cp, functions, launch, args, frames, B):
        """A kernel on its grid (render/cuda.py), then its `_end` kernel if it has one."""
        if launch.kind == "vector":
            grid, block = vector_grid(frames, B, SUM_LANES if launch.accs else VECTOR_LANES)
            if launch.accs:  # each lane's sums, added up by the _end kernel
                nlanes = grid[1] * block[1]
                args += (cp.empty((launch.accs * nlanes, B), F32), np.int32(nlanes))
            functions[launch.name](grid, block, args)
        else:
            threads = sequential_threads(B)
            functions[launch.name]((-(-B // threads), launch.chains), (threads,), args)
        if launch.end:  # after every frame read the start state: a warp per instance and sum
            functions[f"{launch.name}_end"]((-(-B * 32 // 256), max(1, launch.accs)), (256,), args)

    @staticmethod
    def _scan(functions, launch, args, chunk, frames, B):
        """A sequential block as a chunked scan (render/cuda_scan.py): chunk summaries, the
        chunk start states in order, then every chunk from its start state."""
        cp, k, C = require_cupy(), launch.scan, -(-frames // chunk)
        dmem, fb, arrays = args[0], args[1:3], args[3:]
        reads = arrays[: len(launch.reads)]
        fin = cp.empty((C * (k + 1) * k, B), F32)
        init = cp.empty((C * k, B), F32)
        common = (dmem, *fb, np.int32(chunk))
        threads, summarised = 64, C - 1 if launch.pass3 else C  # no pass 3: pass 1 summarises every chunk
        functions[f"{launch.name}_p1"]((-(-summarised * B // threads),), (threads,), (*common, fin, *reads))
        functions[f"{launch.name}_p2"]((-(-B * 32 // threads),), (threads,), (*common, fin, init))  # a warp each
        if launch.pass3:
            functions[f"{launch.name}_p3"]((-(-C * B // threads),), (threads,), (*common, init, *arrays))

    def _whole(self, cp, i, dmem, values, ins, tape, frames, B):
        """Node i as a whole (frames, B) signal (buffer-op operands and kept sources)."""
        nd = self.graph.nodes[i]
        name = nd.op.name
        if i in values:
            return values[i]
        if name == "constant":
            return cp.full((frames, B), nd.op.value, F32)
        if name == "param":
            return cp.broadcast_to(dmem[self.layout.offsets[nd.op.cell.id]], (frames, B)).copy()
        if name in ("input", "tape"):
            key = nd.op.channel if name == "input" else nd.op.ref_id
            return source_signal(name, key, ins, tape, values, i)
        raise RuntimeError(f"node {i} ({name}) has no whole-signal value in the CUDA kernel (a dgen bug)")

    def _buffer_block(self, cp, block, dmem, values, ins, tape, frames, B, override):
        """Buffer ops (whole-signal, FFT-based): on the GPU where cuda_buffer has them (the
        spectral loss and its gradient), else in NumPy: operands and the op's cell rows are
        copied to the host, results and the cell rows back."""
        for n in block.nodes:
            nd = self.graph.nodes[n]
            cell = nd.op.cell
            rows = slice(self.layout.offsets[cell.id], self.layout.offsets[cell.id] + cell.size) if cell else None
            stand_in, on_gpu = override.get(n), GPU_BUFFER_OPS.get(nd.op.name)
            if stand_in is not None or on_gpu is not None:
                args = [self._whole(cp, j, dmem, values, ins, tape, frames, B) for j in nd.inputs]
                sub = dmem[rows] if cell else None  # rows: a view
                values[n] = stand_in(values, sub, *args) if stand_in else on_gpu(cp, nd.op, sub, *args)
                continue
            args = [cp.asnumpy(self._whole(cp, j, dmem, values, ins, tape, frames, B)) for j in nd.inputs]
            if B == 1:
                args = [a[:, 0] for a in args]
            sub = cp.asnumpy(dmem[rows]) if cell else np.zeros((1, B), F32)
            view = sub[:, 0] if B == 1 else sub
            with np.errstate(all="ignore"):
                out = np.asarray(nd.op.run(view, 0, *args), F32)
            if cell:
                dmem[rows] = cp.asarray(sub)
            values[n] = cp.asarray(out.reshape(frames, B))


class CudaProgram(Program):
    """A compiled CUDA program (float32). `mem` is a CuPy array (cells, B) on the GPU;
    `source` is the generated CUDA C."""

    backend = "cuda"
    dtype = F32

    def __init__(self, plan, frame_count, instances=1, keep=(), scan=False):
        self.cp = require_cupy()
        super().__init__(plan, frame_count, instances)
        self.mem = self.cp.asarray(self.mem)
        self.kernel = CudaKernel(plan.graph, plan.schedule, plan.layout, F32, plan.reverse, keep, scan=scan)
        self.kernel.build()  # compile now: errors show at compile()
        self._source = self.kernel.source

    def reset(self) -> None:
        host = np.zeros((self.plan.layout.size, self.instances), F32)
        for at, size, init in self.plan.layout.inits:
            host[at : at + size] = init
        if isinstance(self.mem, np.ndarray):
            self.mem = host
        else:
            self.mem[...] = self.cp.asarray(host)

    def _sync_parameters(self) -> None:
        params = self.graph.parameters
        if not params:
            return
        rows = [self.plan.layout.offsets[p.cell.id] for p in params]
        raw = np.stack([np.asarray(p.instance_values(self.instances), np.float64) for p in params])
        big = np.abs(raw).max(axis=1) > np.finfo(F32).max
        if big.any():
            p = params[int(np.argmax(big))]
            raise RunInputError(
                f"parameter {p.name!r}: value {p.value} is beyond the float32 range of the cuda backend"
            )
        vals = raw.astype(F32)
        if isinstance(self.mem, np.ndarray):
            self.mem[rows] = vals
        else:
            self.mem[self.cp.asarray(rows)] = self.cp.asarray(vals)

    def _check_inputs(self, inputs, frames):
        """As Program's; CuPy inputs (already on the GPU) are taken as they are."""
        cp = self.cp
        if not isinstance(inputs, cp.ndarray):
            return super()._check_inputs(inputs, frames)
        x, B, C = inputs, self.instances, self.n_inputs
        if B == 1 and x.ndim in (1, 2):
            x = x.reshape(1, -1, x.shape[-1])
        if x.ndim != 3 or x.shape[:2] != (B, C) or x.shape[2] == 0 or frames not in (None, x.shape[2]):
            raise RunInputError(f"inputs have shape {inputs.shape}; expected {self._want_shape(frames)}")
        return cp.ascontiguousarray(x, F32), x.shape[2]

    def channel_arrays(self, x):
        """(B, C, N) inputs -> per channel device arrays (N,) or (N, B): one contiguous upload,
        the transpose on the GPU."""
        if isinstance(self.mem, np.ndarray):
            return super().channel_arrays(cp_to_host(x))
        d = self.cp.ascontiguousarray(self.cp.asarray(x, F32).transpose(1, 2, 0))  # (C, N, B)
        return [d[c, :, 0] if self.instances == 1 else d[c] for c in range(d.shape[0])]

    def execute_values(self, x, frames, tape=None) -> dict:
        """Node values as CuPy arrays (no copy to the host)."""
        return self.kernel.execute(self.mem_view(), frames, self.channel_arrays(x), tape)

    def _execute(self, x, frames):
        values = self.execute_values(x, frames)
        out = np.zeros((self.instances, self.n_outputs, frames), F32)
        for ch, nd in self.graph.outputs().items():
            v = self.cp.asnumpy(values[nd.id])
            out[:, ch] = v if self.instances == 1 else v.T
        return out

    def on_host(self):
        """Context: mem moved to a NumPy array for the duration (generic, copying paths)."""
        return _OnHost(self)


class _OnHost:
    def __init__(self, prog):
        self.prog = prog

    def __enter__(self):
        self.device = self.prog.mem
        self.prog.mem = self.prog.cp.asnumpy(self.device)

    def __exit__(self, *exc):
        self.device[...] = self.prog.cp.asarray(self.prog.mem)
        self.prog.mem = self.device


def cuda_program(graph, frame_count=4096, backwards=False, instances=1, **options):
    """`dgen.compile(..., backend="cuda")`. Options: keep (node ids whose values
    `execute_values` returns), dtype (float32 only), scan (run affine sequential blocks as
    chunked scans when B is small, render/cuda_scan.py; results then differ from the
    frame-by-frame loop by rounding. Default None: training kernels scan, forward-only
    programs do not, so their runs stay bit-exact under streaming and across instance counts;
    True or False for both), cuda_graphs
    (default True: `TrainingContext.train` replays a CUDA graph of one step, cuda_train.py)."""
    from ..pipeline import plan

    keep = options.pop("keep", ())
    scan = options.pop("scan", None)
    cuda_graphs = bool(options.pop("cuda_graphs", True))
    dtype = np.dtype(options.pop("dtype", F32))
    options.pop("expand", None)  # always expanded (phasor/accum/latch become history loops)
    if dtype != F32:
        raise ValueError(f"the CUDA backend computes in float32; dtype={dtype} is not supported")
    if options:
        raise TypeError(f"unknown option(s) for the CUDA backend: {sorted(options)}")
    require_cupy()
    forward = CudaProgram(plan(graph, expand=True), frame_count, instances, keep=keep, scan=scan is True)
    if not backwards:
        return forward

    def factory(p, keep):
        return CudaKernel(p.graph, p.schedule, p.layout, F32, p.reverse, keep, scan=scan is not False)

    from .cuda_training import CudaTrainingProgram

    prog = CudaTrainingProgram(forward, factory)  # training_program(...) with a GPU-resident step
    prog.cuda_graphs = cuda_graphs
    return prog
