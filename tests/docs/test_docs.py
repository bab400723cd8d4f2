"""docs/ops.md is generated from the op classes (python -m dgen.docs) and must be current."""

from pathlib import Path

from dgen import docs
from dgen.ops import REGISTRY

OPS_MD = Path(__file__).resolve().parents[2] / "docs" / "ops.md"


def test_committed_ops_md_is_current():
    assert OPS_MD.read_text() == docs.generate(), "docs/ops.md is out of date: run python -m dgen.docs"


def test_every_registered_op_is_documented():
    text = docs.generate()
    for name, cls in REGISTRY.items():
        assert f"`Op.{name}" in text, name
        assert (cls.__doc__ or "").strip(), f"op {name!r} has no docstring (its formula)"
    assert "(undocumented)" not in text


def test_check_mode(tmp_path, capsys):
    stale = tmp_path / "ops.md"
    stale.write_text("old\n")
    assert docs.main(["--check", "-o", str(stale)]) == 1
    assert docs.main(["-o", str(stale)]) == 0
    assert docs.main(["--check", "-o", str(stale)]) == 0
