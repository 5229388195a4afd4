"""`sgl check` and `sgl fmt` as a user calls them: exit codes, streams, JSON, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sgl.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = 'prompt "a dog on a beach"\nuse edits\nkeep(dog)\n'
SYNTAX_ERROR = 'prompt "a dog on a beach"\nsize(dog) == 1\n'
NAME_ERROR = 'prompt "a dog on a beach"\nuse edits\nkeep(dgo)\n'
WARNING = 'prompt "a dog on a beach"\nuse edits\ncentroid(dog) = (1.5, 0.5)\n'


@pytest.fixture
def write(tmp_path):
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)
    return write


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_check_good_program_exits_0_silently(capsys, write):
    assert run(capsys, "check", write("ok.sgl", GOOD)) == (0, "", "")


@pytest.mark.parametrize("text, code", [(SYNTAX_ERROR, "E006"), (NAME_ERROR, None)])
def test_check_errors_exit_1_on_stderr_only(capsys, write, text, code):
    path = write("bad.sgl", text)
    status, out, err = run(capsys, "check", path)
    assert status == 1 and out == ""
    assert f"{path}:" in err and "^" in err and "Traceback" not in err
    if code:
        assert f"error[{code}]" in err
    assert "\x1b[" not in err  # not a terminal: no colour


def test_check_reports_every_file(capsys, write):
    status, _, err = run(capsys, "check", write("a.sgl", SYNTAX_ERROR), write("b.sgl", NAME_ERROR),
                         write("c.sgl", GOOD))
    assert status == 1 and "a.sgl:2:" in err and "b.sgl:3:" in err and "found 2 errors" in err


def test_warnings_pass_unless_strict(capsys, write):
    path = write("w.sgl", WARNING)
    status, out, err = run(capsys, "check", path)
    assert (status, out) == (0, "") and "warning[" in err
    assert run(capsys, "check", "--strict", path)[0] == 1


def test_json_output_shape(capsys, write):
    status, out, err = run(capsys, "check", "--json", write("bad.sgl", SYNTAX_ERROR))
    assert status == 1 and err == ""
    (entry,) = json.loads(out)
    assert set(entry) == {"code", "severity", "message", "file", "line", "column", "end_line",
                          "end_column", "hint"}
    assert (entry["code"], entry["severity"], entry["line"], entry["column"]) == ("E006", "error", 2, 12)
    assert run(capsys, "check", "--json", write("ok.sgl", GOOD))[1].strip() == "[]"


def test_usage_errors_exit_2(capsys, write):
    status, out, err = run(capsys, "check", str(Path(write("x.sgl", GOOD)).with_name("missing.sgl")))
    assert status == 2 and out == "" and "no such file" in err
    assert run(capsys, "check")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2


def test_error_in_an_imported_file_shows_the_chain(capsys, write):
    write("lib/broken.sgl", "fn spot(o: Object) -> Vec2 = centroid(o) + size(o)\n")
    main_file = write("main.sgl", 'prompt "a dog"\nuse edits\nuse "lib/broken.sgl"\nkeep(dog)\n')
    status, _, err = run(capsys, "check", main_file)
    assert status == 1 and "broken.sgl:1:" in err and "included from" in err


def test_internal_error_is_reported_without_traceback_unless_debug(capsys, write, monkeypatch):
    import sgl.compiler

    def explode(path, optimize=True):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(sgl.compiler, "check_file", explode)
    path = write("ok.sgl", GOOD)
    status, out, err = run(capsys, "check", path)
    assert status == 1 and out == "" and "internal compiler error" in err
    assert "Traceback" not in err and "report" in err
    assert "Traceback" in run(capsys, "check", "--debug", path)[2]


def test_fmt_check_lists_files_that_would_change(capsys, write):
    messy, tidy = write("messy.sgl", "seed   1\n"), write("tidy.sgl", "seed 1\n")
    status, out, _ = run(capsys, "fmt", "--check", messy, tidy)
    assert status == 1 and out == f"would reformat {messy}\n"
    assert Path(messy).read_text() == "seed   1\n"
    assert run(capsys, "fmt", "--check", tidy)[0] == 0


def test_fmt_rewrites_in_place(capsys, write):
    messy = write("messy.sgl", "seed   1  # keep me\n")
    status, out, err = run(capsys, "fmt", messy)
    assert status == 0 and out == "" and "1 file reformatted" in err
    assert Path(messy).read_text() == "seed 1  # keep me\n"
    assert not list(Path(messy).parent.glob(".*.tmp"))


def test_fmt_refuses_a_file_with_syntax_errors(capsys, write):
    path = write("bad.sgl", SYNTAX_ERROR)
    status, out, err = run(capsys, "fmt", path)
    assert status == 1 and out == "" and "E006" in err
    assert Path(path).read_text() == SYNTAX_ERROR


def test_console_script_and_no_torch(tmp_path):
    """The installed entry point runs, and checking a program never imports torch."""
    program = tmp_path / "p.sgl"
    program.write_text(GOOD)
    code = ("import sys; from sgl.cli import main; status = main(['check', sys.argv[1]]); "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch imported'; "
            "sys.exit(status)")
    done = subprocess.run([sys.executable, "-c", code, str(program)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    script = Path(sys.executable).with_name("sgl")
    if script.exists():
        done = subprocess.run([str(script), "check", str(ROOT / "tests/bad/syntax/double_equals.sgl")],
                              capture_output=True, text=True)
        assert done.returncode == 1 and done.stdout == "" and "E006" in done.stderr


def test_set_values_are_typed_and_quoted_strings_unquoted():
    from sgl.cli import parse_setting_value

    assert parse_setting_value("3") == 3 and parse_setting_value("2.5") == 2.5
    assert parse_setting_value("64x32") == (64, 32)
    assert parse_setting_value('"up_blocks.1,up_blocks.2"') == "up_blocks.1,up_blocks.2"
    assert parse_setting_value("ddim") == "ddim" and parse_setting_value('"') == '"'


def test_run_with_a_bad_set_value_stops_before_loading_a_model(capsys, write, tmp_path):
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "run", write("ok.sgl", GOOD), "--set", "warmup=2", "--set", "stpes=3",
                              "--out", str(out))
    assert status == 1 and stdout == "" and "Traceback" not in err
    assert "error[E024]: setting `warmup` must be from 0 to 1" in err
    assert "error[E020]: unknown setting `stpes`" in err and "did you mean `steps`?" in err
    assert not out.exists()
