"""`sgl ir` of every example, compared with tests/snapshots/ir/<name>.txt.

After an intended change, rewrite the snapshots with `SGL_BLESS=1 pytest tests/test_ir_snapshots.py`
and read the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sgl.cli import main

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "tests" / "snapshots" / "ir"
EXAMPLES = sorted((ROOT / "examples").glob("*.sgl"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_ir_snapshot(path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # file names in the output are relative to the repository
    assert main(["ir", str(path.relative_to(ROOT))]) == 0
    text = capsys.readouterr().out
    snapshot = SNAPSHOTS / f"{path.stem}.txt"
    if os.environ.get("SGL_BLESS"):
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(text, encoding="utf-8")
    assert snapshot.exists(), f"no snapshot for {path.name}: run with SGL_BLESS=1 and review it"
    assert text == snapshot.read_text(encoding="utf-8")


def test_every_snapshot_has_an_example():
    stale = {p.stem for p in SNAPSHOTS.glob("*.txt")} - {p.stem for p in EXAMPLES}
    assert not stale, f"snapshots without an example: {sorted(stale)}"
