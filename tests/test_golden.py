"""Golden tests for bad programs, shared by every stage of the compiler.

Each folder `tests/bad/<group>/` holds programs with one mistake each (helper files for
imports live in subfolders). Every `*.sgl` is checked by the full compiler half, from inside its
folder so that paths in the output are relative to it. Its rendered diagnostics and exit status
are concatenated into `expected.txt`, reviewed like code:

    SGL_BLESS=1 pytest tests/test_golden.py        # rewrite every expected.txt, then read the diff
    SGL_BLESS=syntax pytest tests/test_golden.py   # only tests/bad/syntax

Each file marks the line of every diagnostic it expects with `# ~ ERROR E012` (or
`# ~ WARNING W001`); the harness checks that each marked code is reported on that line, and
that every file reports at least one diagnostic (a "bad" program that passes is a bug).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

from sgl.diagnostics import Diagnostic, SGLError

BAD = Path(__file__).parent / "bad"
GROUPS = sorted(p.name for p in BAD.iterdir() if p.is_dir()) if BAD.is_dir() else []
MARKER = re.compile(r"#\s*~\s*(ERROR|WARNING)\s+([EW]\d{3})")


def programs(group: str) -> list[Path]:
    return sorted((BAD / group).glob("*.sgl"))


@functools.lru_cache(maxsize=None)
def outcome(group: str, name: str) -> tuple[tuple[Diagnostic, ...], tuple[tuple[str, str], ...]]:
    """(diagnostics, sources) of checking `name` from inside its group folder."""
    folder = BAD / group
    previous = os.getcwd()
    os.chdir(folder)
    try:
        diagnostics, sources = _check(name)
    finally:
        os.chdir(previous)
    return tuple(diagnostics), tuple(sorted(sources.items()))


def _check(name: str) -> tuple[list[Diagnostic], dict[str, str]]:
    text = Path(name).read_text(encoding="utf-8")
    try:
        from sgl.compiler import check_source
    except ImportError:  # before the checker exists: syntax only
        from sgl.syntax.parse import parse as check_source
    try:
        result = check_source(text, name)
    except SGLError as error:
        return list(error.diagnostics), {name: text, **error.sources}
    return list(getattr(result, "warnings", ()) or ()), {name: text, **(getattr(result, "texts", None) or {})}


def rendered(group: str, path: Path) -> str:
    from sgl.cli import _public
    from sgl.render import render_all

    diagnostics, sources = outcome(group, path.name)
    status = 1 if any(d.is_error for d in diagnostics) else 0
    text = render_all([_public(d, debug=False) for d in diagnostics], dict(sources))
    return f"$ sgl check {path.name}\n{text}\n[exit {status}]\n" if text else \
        f"$ sgl check {path.name}\n[exit {status}]\n"


@pytest.mark.parametrize("group", GROUPS)
def test_expected_output(group):
    files = programs(group)
    if not files:
        pytest.skip(f"no programs in tests/bad/{group}")
    actual = "\n".join(rendered(group, p) for p in files)
    expected_file = BAD / group / "expected.txt"
    if _blessing(group):
        expected_file.write_text(actual, encoding="utf-8")
        return
    if not expected_file.exists():
        pytest.fail(f"tests/bad/{group}/expected.txt is missing: run `SGL_BLESS=1 pytest tests/test_golden.py`")
    assert actual == expected_file.read_text(encoding="utf-8"), (
        f"output of tests/bad/{group} changed: review it with `SGL_BLESS=1 pytest tests/test_golden.py` and git diff")


def _blessing(group: str) -> bool:
    """SGL_BLESS=1 rewrites every group; SGL_BLESS=syntax,check only those."""
    value = os.environ.get("SGL_BLESS", "")
    return value == "1" or group in value.split(",")


def _markers(path: Path) -> list[tuple[int, str]]:
    return [(number, match.group(2))
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            for match in MARKER.finditer(line)]


ALL_PROGRAMS = [(group, path) for group in GROUPS for path in programs(group)]


@pytest.mark.parametrize("group, path", ALL_PROGRAMS, ids=[f"{g}/{p.name}" for g, p in ALL_PROGRAMS])
def test_markers_match_diagnostics(group, path):
    from sgl.render import display_position

    diagnostics, sources = outcome(group, path.name)
    sources = dict(sources)
    assert diagnostics, f"{group}/{path.name} is in tests/bad but reports nothing"
    reported = set()
    for d in diagnostics:
        if d.span is not None:
            line, _ = display_position(d.span, sources.get(d.span.file))
            reported.add((d.span.file, line, d.code))
    # Markers in the program and in any file it reached (imports), by their relative path.
    for file in {path.name, *sources}:
        marked_file = BAD / group / file
        if file.startswith("<") or not marked_file.is_file():
            continue
        for line, code in _markers(marked_file):
            assert (file, line, code) in reported, (
                f"{group}/{file}:{line} expects {code}; reported: {sorted(reported)}")
