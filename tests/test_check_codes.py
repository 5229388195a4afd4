"""Every checker code has an explanation, and its examples do what the explanation says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sgl.check import check
from sgl.check.codes import EXPLANATIONS, explain
from sgl.diagnostics import SGLError
from sgl.syntax.parse import parse

ERRORS_PY = Path(__file__).resolve().parent.parent / "sgl" / "check" / "errors.py"


def test_every_code_the_checker_can_report_is_explained():
    used = set(re.findall(r'Diagnostic\("([EW]\d{3})"', ERRORS_PY.read_text()))
    assert used == set(EXPLANATIONS)


def _diagnostics(tmp_path: Path, text: str, files: dict[str, str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    main = tmp_path / "main.sgl"
    main.write_text(text)
    try:
        return check(parse(text, str(main)), texts={str(main): text}).warnings
    except SGLError as e:
        return e.diagnostics


WITH_EXAMPLES = [e for e in EXPLANATIONS.values() if e.example]


@pytest.mark.parametrize("entry", WITH_EXAMPLES, ids=[e.code for e in WITH_EXAMPLES])
def test_example_reports_the_code_and_the_fix_does_not(entry, tmp_path):
    broken = _diagnostics(tmp_path / "broken", entry.example, entry.files)
    assert entry.code in [d.code for d in broken]
    fixed = _diagnostics(tmp_path / "fixed", entry.fixed, entry.files)
    assert [d.code for d in fixed] == []


def test_explain_renders_text():
    text = explain("e031")
    assert text.startswith("not a word of the prompt") and "dgo" in text and "Fixed:" in text
    assert explain("E999") is None


def test_sgl_explain_shows_checker_codes(capsys):
    from sgl.cli import main

    assert main(["explain", "E031"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("E031: not a word of the prompt") and "centroid(dog)" in out
