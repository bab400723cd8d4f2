"""The README's first command: the seed example reaches its targets with exact gradients."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_training.py"


def _load():
    spec = importlib.util.spec_from_file_location("seed_training", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc")),
    reason="needs a C compiler: on the reference backend the example takes over a minute",
)
def test_seed_example_converges_and_writes_its_files(tmp_path, capsys):
    mod = _load()
    assert mod.main(["--out", str(tmp_path), "--backend", "c"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    final = dict(kv.split("=") for kv in out[-1].removeprefix("final ").split())
    assert abs(float(final["frequency"]) - 300.0) < 1.0
    assert abs(float(final["lfo_frequency"]) - 10.0) < 0.1
    assert sum(line.startswith("Iteration ") for line in out) == 12  # every 10 of 120 iterations
    import soundfile

    audio, rate = soundfile.read(tmp_path / "seed_training.wav")
    assert rate == 44100 and len(audio) == 2 * 44100 and np.abs(audio).max() > 0.5
    assert (tmp_path / "seed_training_loss.png").stat().st_size > 10_000


def test_seed_graph_is_the_seeds(tmp_path):
    """Same signal as the closed form of DGen.md's graph (reference backend, float64)."""
    import dgen

    mod = _load()
    g, freq, lfo, _ = mod.build(1)
    out = dgen.compile(g, backend="reference", frame_count=512).run()
    n = np.arange(512)
    learned = np.sin(2 * np.pi * ((n * 237.0 / 44100) % 1.0)) * ((n * 8.5 / 44100) % 1.0)
    target = np.sin(2 * np.pi * ((n * 300.0 / 44100) % 1.0)) * ((n * 10.0 / 44100) % 1.0)
    np.testing.assert_allclose(out[1], learned, atol=1e-9)
    np.testing.assert_allclose(out[2], target, atol=1e-9)
