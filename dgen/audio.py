"""Audio files through soundfile (optional extra `dgen[audio]`), NumPy arrays everywhere else."""

from __future__ import annotations

import numpy as np

from .errors import BackendUnavailable, RunInputError


def _soundfile():
    try:
        import soundfile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BackendUnavailable("reading and writing audio files needs soundfile: pip install 'dgen[audio]'") from e
    return soundfile


def load_audio(path, sample_rate=None) -> tuple[np.ndarray, int]:
    """(channels, frames) float32 and the file's rate; refuses to resample silently."""
    data, rate = _soundfile().read(str(path), dtype="float32", always_2d=True)
    if sample_rate is not None and int(sample_rate) != rate:
        raise RunInputError(
            f"{path}: sample rate is {rate} Hz but {int(sample_rate)} Hz was asked for; "
            "dgen does not resample: convert the file first (e.g. sox in.wav -r 44100 out.wav)"
        )
    return np.ascontiguousarray(data.T), rate


def save_audio(path, signal, sample_rate=44100, subtype="FLOAT") -> None:
    """Write (channels, frames) or (frames,) samples to a WAV/FLAC/OGG file."""
    x = np.asarray(signal, np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise RunInputError(f"save_audio: expected (channels, frames) or (frames,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise RunInputError(f"save_audio: {path}: the signal has NaN or inf samples")
    _soundfile().write(str(path), x.T, int(sample_rate), subtype=subtype)
