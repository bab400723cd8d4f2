"""PyTorch peer benchmarks for dgen training steps.

Each function returns the median wall time (ms) of one training step (forward + backward +
a plain SGD update of the parameters), after warm-up, with ``torch.set_num_threads(1)`` on CPU.
With ``device="cuda"`` the same graphs run on the GPU and each step is bracketed by
``torch.cuda.synchronize()``.

* ``torch_onepole_step_ms``: fit a one-pole lowpass ``y[n] = (1-a) x[n] + a y[n-1]`` (one ``a`` per
  batch item) to a target made with ``a = 0.9``, MSE loss; the recurrence is torchlpc's
  ``sample_wise_lpc`` (which filters ``y[n] = x[n] - sum_k A[n,k] y[n-k]``, so ``A = -a``).
* ``torch_seed_step_ms``: dgen's seed example (shared/seed/DGen.md): learnable
  ``sig = sin(2 pi phasor(f)) * phasor(f_lfo)`` against the target at 300 Hz / 10 Hz,
  ``loss = 100 * spectral_loss(W=64) + 0.003 * mse`` with the phasors as a per-sample Python loop
  ``phase[n+1] = frac(phase[n] + f/sr)`` under autograd (the "naive torch" peer).
* ``torch_seed_step_ms_cumsum``: the same graph with ``phase = frac(exclusive_cumsum(f/sr))``,
  the vectorised "best torch" peer.

``python benchmarks/peers/torch_bench.py`` prints the table for batch 1 and 64.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

SR = 44100.0


# ----------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(
    step: Callable[[], object],
    device: torch.device,
    warmup: int = 2,
    min_runs: int = 5,
    max_runs: int = 50,
    budget_s: float = 3.0,
) -> float:
    """Median ms of step() over repeated runs after `warmup` runs; stops after `max_runs` runs
    or once `budget_s` seconds have been spent (but never before `min_runs` runs)."""
    for _ in range(warmup):
        step()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _setup(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    elif dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' asked for, but torch.cuda.is_available() is False")
    return dev


def _noise(batch: int, frames: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Deterministic uniform noise in [-1, 1), made on the CPU so every device sees the same."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, frames, generator=g) * 2 - 1).to(device)


def _sgd_(params: list[torch.Tensor], lr: float) -> None:
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None


# ----------------------------------------------------------------------------- one-pole


def _sample_wise_lpc():
    # torchlpc without its compiled extension falls back to numba; numba-cuda builds that still
    # register an overload for np.row_stack fail on numpy >= 2.4 (removed there): alias it.
    import numpy as np

    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack
    from torchlpc import sample_wise_lpc

    return sample_wise_lpc


def onepole(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """y[n] = (1-a) x[n] + a y[n-1], y[-1] = 0; x (B, T), a (B,)."""
    sample_wise_lpc = _sample_wise_lpc()

    B, T = x.shape
    A = (-a).view(B, 1, 1).expand(B, T, 1)  # y[n] = u[n] - A[n,0] y[n-1]
    return sample_wise_lpc((1 - a).view(B, 1) * x, A)


def make_onepole_step(batch: int, frames: int = 4096, device: str | torch.device = "cpu", lr: float = 0.01):
    """(step, params): one training step of the one-pole fit, and its parameter tensor."""
    dev = torch.device(device)
    x = _noise(batch, frames, dev)
    with torch.no_grad():
        target = onepole(x, torch.full((batch,), 0.9, device=dev))
    a = torch.full((batch,), 0.5, device=dev, requires_grad=True)

    def step() -> torch.Tensor:
        y = onepole(x, a)
        loss = ((y - target) ** 2).mean(dim=1).sum()  # per item: mean over frames
        loss.backward()
        _sgd_([a], lr)
        return loss.detach()

    return step, [a]


def torch_onepole_step_ms(batch: int, frames: int = 4096, device: str = "cpu") -> float:
    """Median ms of one fwd+bwd(+SGD) step fitting a one-pole coefficient with torchlpc."""
    dev = _setup(device)
    step, _ = make_onepole_step(batch, frames, dev)
    return _median_ms(step, dev)


# ----------------------------------------------------------------------------- biquad


def lowpass_coefficients(fc: torch.Tensor, q: torch.Tensor, sr: float = SR):
    """RBJ lowpass (b (B, 3), a (B, 3) with a[:, 0] = 1) for per-item cutoff and Q (B,)."""
    w = 2 * torch.pi * fc / sr
    alpha, c = torch.sin(w) / (2 * q), torch.cos(w)
    a0 = 1 + alpha
    b = torch.stack([(1 - c) / 2, 1 - c, (1 - c) / 2], -1) / a0.unsqueeze(-1)
    a = torch.stack([torch.ones_like(c), -2 * c / a0, (1 - alpha) / a0], -1)
    return b, a


def biquad_lfilter(x: torch.Tensor, fc: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Lowpass biquad with torchaudio's lfilter (its CUDA kernel: one thread per item)."""
    import torchaudio.functional as AF

    b, a = lowpass_coefficients(fc, q)
    return AF.lfilter(x, a, b, clamp=False, batching=True)


def biquad_lpc(x: torch.Tensor, fc: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The same biquad as torch ops for the numerator and torchlpc's sample_wise_lpc for the
    poles: u[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2], y[n] = u[n] - a1 y[n-1] - a2 y[n-2]."""
    sample_wise_lpc = _sample_wise_lpc()
    B, T = x.shape
    b, a = lowpass_coefficients(fc, q)
    padded = torch.nn.functional.pad(x, (2, 0))
    u = b[:, :1] * x + b[:, 1:2] * padded[:, 1:-1] + b[:, 2:] * padded[:, :-2]
    return sample_wise_lpc(u, a[:, 1:].view(B, 1, 2).expand(B, T, 2).contiguous())


def make_biquad_step(batch: int, frames: int = 4096, device="cpu", biquad=biquad_lpc, lr: float = 1e-3):
    """(step, params): fit (cutoff, q) of a lowpass to a 1500 Hz, q 0.7 target on white noise,
    MSE per item summed over the batch, plain SGD; `biquad` is biquad_lpc or biquad_lfilter."""
    dev = torch.device(device)
    x = _noise(batch, frames, dev)
    with torch.no_grad():
        target = biquad(x, torch.full((batch,), 1500.0, device=dev), torch.full((batch,), 0.7, device=dev))
    cutoff = torch.full((batch,), 800.0, device=dev, requires_grad=True)
    q = torch.full((batch,), 0.9, device=dev, requires_grad=True)

    def step() -> torch.Tensor:
        loss = ((biquad(x, cutoff, q) - target) ** 2).mean(dim=1).sum()
        loss.backward()
        _sgd_([cutoff, q], lr)
        return loss.detach()

    return step, [cutoff, q]


# ----------------------------------------------------------------------------- seed example


def phasor_loop(freq: torch.Tensor, frames: int, sr: float = SR) -> torch.Tensor:
    """dgen phasor as a per-sample Python loop: out[n] = s[n], s[0] = 0,
    s[n+1] = frac(s[n] + f/sr). freq (...,) constant over frames; returns (..., frames)."""
    inc = freq / sr
    s = torch.zeros_like(inc)
    out = []
    for _ in range(frames):
        out.append(s)
        s = torch.frac(s + inc)  # d frac / dx = 1 (dgen: wrap01 passes the gradient through)
    return torch.stack(out, dim=-1)


def phasor_cumsum(freq: torch.Tensor, frames: int, sr: float = SR) -> torch.Tensor:
    """The same phasor vectorised: frac of the exclusive cumulative sum of f/sr."""
    inc = (freq / sr).unsqueeze(-1).expand(*freq.shape, frames)
    total = torch.cumsum(inc, dim=-1) - inc  # sum_{m<n} inc: out[0] = 0
    return torch.frac(total)


def spectral_loss(a: torch.Tensor, b: torch.Tensor, window: int = 64) -> torch.Tensor:
    """dgen spectral loss per frame (B, T): rectangular window of the `window` samples ending at
    frame n (zeros before 0), hop 1, sum_{k=0}^{W/2} (|A_k| - |B_k|)^2."""

    def mag(x: torch.Tensor) -> torch.Tensor:
        frames = torch.nn.functional.pad(x, (window - 1, 0)).unfold(-1, window, 1)  # (B, T, W)
        return torch.fft.rfft(frames, dim=-1).abs()  # k = 0 .. W/2; abs'(0) = 0 in torch

    return ((mag(a) - mag(b)) ** 2).sum(dim=-1)


def seed_loss(freq: torch.Tensor, lfo: torch.Tensor, frames: int, phasor) -> torch.Tensor:
    """The seed graph's objective: per batch item mean over frames of
    100 * spectral_loss(sig, target, 64) + 0.003 * (sig - target)^2, summed over the batch."""
    B = freq.shape[0]
    # learnable and target phasors in one tensor (B, 4, T): f, f_lfo, 300 Hz, 10 Hz
    f_all = torch.stack([freq, lfo, freq.new_full((B,), 300.0), freq.new_full((B,), 10.0)], dim=1)
    ph = phasor(f_all, frames)
    two_pi = 2.0 * torch.pi
    sig = torch.sin(two_pi * ph[:, 0]) * ph[:, 1]
    tgt = torch.sin(two_pi * ph[:, 2]) * ph[:, 3]
    per_frame = 100.0 * spectral_loss(sig, tgt, 64) + 0.003 * (sig - tgt) ** 2
    return per_frame.mean(dim=1).sum()


def make_seed_step(
    batch: int, frames: int = 4096, device: str | torch.device = "cpu", phasor=phasor_loop, lr: float = 1e-3
):
    dev = torch.device(device)
    freq = torch.full((batch,), 237.0, device=dev, requires_grad=True)
    lfo = torch.full((batch,), 8.5, device=dev, requires_grad=True)

    def step() -> torch.Tensor:
        loss = seed_loss(freq, lfo, frames, phasor)
        loss.backward()
        _sgd_([freq, lfo], lr)
        return loss.detach()

    return step, [freq, lfo]


def torch_seed_step_ms(batch: int, frames: int = 4096, device: str = "cpu") -> float:
    """Median ms of one seed-example step, phasors as a per-sample Python loop under autograd."""
    dev = _setup(device)
    step, _ = make_seed_step(batch, frames, dev, phasor_loop)
    # each step is slow (a Python loop of `frames` iterations): fewer runs
    return _median_ms(step, dev, warmup=1, min_runs=3, max_runs=10, budget_s=4.0)


def torch_seed_step_ms_cumsum(batch: int, frames: int = 4096, device: str = "cpu") -> float:
    """Median ms of one seed-example step, phasors vectorised with cumsum + frac."""
    dev = _setup(device)
    step, _ = make_seed_step(batch, frames, dev, phasor_cumsum)
    return _median_ms(step, dev)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="PyTorch peer training-step timings (ms)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--frames", type=int, default=4096)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)
    rows = [
        ("onepole (torchlpc)", torch_onepole_step_ms),
        ("seed, python loop", torch_seed_step_ms),
        ("seed, cumsum", torch_seed_step_ms_cumsum),
    ]
    threads = "1 thread" if args.device == "cpu" else args.device
    print(
        f"PyTorch {torch.__version__} peers: ms per training step (fwd+bwd+SGD), median, "
        f"{args.frames} frames, {threads}"
    )
    print(f"{'step':<20}" + "".join(f"{f'batch {b}':>12}" for b in args.batches))
    for name, fn in rows:
        vals = [fn(b, args.frames, device=args.device) for b in args.batches]
        print(f"{name:<20}" + "".join(f"{v:>12.2f}" for v in vals), flush=True)


if __name__ == "__main__":
    main()
