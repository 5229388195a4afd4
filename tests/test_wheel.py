"""The built wheel (a non-editable install) carries grammar/, stdlib/ and the shapes weights,
and the compiler finds them there, not in the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (found,) = out.glob("sgl-*.whl")
    return found


def test_wheel_contains_grammar_stdlib_and_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sgl/_data/grammar/sgl.lark" in names
    for module in ("prelude", "core", "edits"):
        assert f"sgl/_data/stdlib/{module}.sgl" in names
    if (ROOT / "sgl/models/shapes/weights/model_index.json").exists():
        assert "sgl/models/shapes/weights/model_index.json" in names
        assert "sgl/models/shapes/weights/sgl.json" in names  # the tuned guidance travels with it


def test_installed_wheel_checks_a_program_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    program = tmp_path / "move.sgl"
    program.write_text('prompt "a red circle and a blue square"\nuse edits\nmove(circle, (0.25, 0))\n')
    code = ("import sgl, sgl.resources as r; "
            "assert str(r.stdlib_dir()).startswith(%r), r.stdlib_dir(); "
            "ep = sgl.check(%r); print(len(ep.terms))") % (str(site), str(program))
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 3
