"""Every benchmark runs end to end and prints measured numbers (the numbers themselves are
checked only for sanity: benchmarks, not timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "sgl/models/shapes/weights/model_index.json"


def _bench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sgl.cli", "bench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_bench_check_measures_every_file(tmp_path):
    out = tmp_path / "check.json"
    done = _bench("check", "examples/move.sgl", "--repeats", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert list(result["files"]) == ["examples/move.sgl"] and result["files"]["examples/move.sgl"] > 0
    assert "target" in done.stdout


def test_bench_speed_on_a_tiny_architecture(tmp_path):
    out = tmp_path / "speed.json"
    done = _bench("speed", "--arch", "tiny", "--steps", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"plain", "sgl edit", "sgl cached"}
    assert rows["plain"]["ratio"] == 1.0 and all(r["seconds"] > 0 for r in rows.values())


@pytest.mark.skipif(not SHAPES.exists(), reason="the shapes weights are not exported yet")
def test_bench_edits_runs_end_to_end(tmp_path):
    out = tmp_path / "edits.json"
    done = _bench("edits", "--n", "2", "--steps", "6", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["n"] == 2
    assert set(result["sgl"]) == set(result["prompt-only"]) and "move" in result["sgl"]
    for row in result["sgl"].values():
        assert row["n"] == 2 and 0.0 <= row["success"] <= 1.0
    assert "prompt-only" in done.stdout
