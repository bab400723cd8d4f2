"""Each example in examples/ runs in fast mode in a temp dir and reaches its real result:
its files exist and its audio is not silent, fitted values are within the stated tolerance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import dgen

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name, tmp_path):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--fast", "--out", str(tmp_path)])
    for path in result["files"]:
        assert Path(path).is_file() and Path(path).stat().st_size > 0, path
        if str(path).endswith(".wav"):
            y, _ = dgen.load_audio(path)
            assert np.all(np.isfinite(y)) and np.abs(y).max() > 0.01, f"{path} is silent"
        else:
            assert Path(path).read_bytes()[:4] == b"\x89PNG"
    return result


def test_subtractive_fit_recovers_cutoff(tmp_path):
    r = run_example("subtractive_fit", tmp_path)
    assert abs(r["cutoff"] - r["true_cutoff"]) < 0.01 * r["true_cutoff"], r
    assert r["ok"]


def test_karplus_strong_pitch_and_decay(tmp_path):
    r = run_example("karplus_strong", tmp_path)
    assert abs(r["pitch"] - r["tuned"]) < 0.01 * r["tuned"], r
    assert r["rms_tail"] < 0.6 * r["rms_head"], r
    assert 0.1 < r["peak"] < 1.0
    assert r["ok"]


def test_compressor_drums_lowers_crest_factor(tmp_path):
    r = run_example("compressor_drums", tmp_path)
    assert r["crest_compressed"] < r["crest_dry"] - 2.0, r
    assert r["peak_compressed"] < 1.0
    assert r["ok"]


def test_multistart_fit_best_instance(tmp_path):
    r = run_example("multistart_fit", tmp_path)
    assert abs(r["index"] - 3.7) < 0.01 and abs(r["amp"] - 0.5) < 0.005, r
    assert 1 <= r["converged"] < r["instances"], "the landscape has local minima: not every start converges"
    assert r["ok"]


@pytest.mark.parametrize("name", ["subtractive_fit", "karplus_strong", "compressor_drums", "multistart_fit"])
def test_example_help(name, capsys):
    spec = importlib.util.spec_from_file_location(f"example_help_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    out = capsys.readouterr().out
    assert "--fast" in out and "--out" in out
