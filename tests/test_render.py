"""The renderer, compared as exact text: plain, coloured, ASCII and JSON."""

from __future__ import annotations

import json

from sgl.diagnostics import Diagnostic, Label, SGLError, Severity, Span
from sgl.render import diagnostics_json, render, render_all, render_json

TEXT = 'prompt "a dog on a beach"\nseed 7\nsteps 20\nsize(dgo) = 0.5\ncfg 5\nresolution 512\nmodel "shapes"\n'


def span_of(text: str, needle: str, file: str = "move.sgl", occurrence: int = 0) -> Span:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(needle, start + 1)
    return Span.at_offsets(file, text, start, start + len(needle))


def word_error(**extra) -> Diagnostic:
    return Diagnostic("E012", "`dgo` is not a word of the prompt", span_of(TEXT, "dgo"),
                      hint="did you mean `dog`?", **extra)


def test_plain_layout_with_two_lines_of_context():
    assert render(word_error(), {"move.sgl": TEXT}) == (
        "error[E012]: `dgo` is not a word of the prompt\n"
        " --> move.sgl:4:6\n"
        "  |\n"
        "2 | seed 7\n"
        "3 | steps 20\n"
        "4 | size(dgo) = 0.5\n"
        "  |      ^^^\n"
        "5 | cfg 5\n"
        "6 | resolution 512\n"
        "  |\n"
        "  = help: did you mean `dog`?"
    )


def test_secondary_label_notes_and_import_chain():
    diag = word_error(
        labels=(Label(span_of(TEXT, "dog"), "prompt words are declared here"),),
        notes=("objects are words of the prompt",),
        included_from=(Span("main.sgl", 2, 1, 2, 12),))
    assert render(diag, {"move.sgl": TEXT}) == (
        "error[E012]: `dgo` is not a word of the prompt\n"
        " --> move.sgl:4:6\n"
        "  |\n"
        '1 | prompt "a dog on a beach"\n'
        "  |           --- prompt words are declared here\n"
        "2 | seed 7\n"
        "3 | steps 20\n"
        "4 | size(dgo) = 0.5\n"
        "  |      ^^^\n"
        "5 | cfg 5\n"
        "6 | resolution 512\n"
        "  |\n"
        "  = help: did you mean `dog`?\n"
        "  = note: objects are words of the prompt\n"
        "  = note: in file included from main.sgl:2:1"
    )


def test_distant_lines_are_elided_and_gutter_widens():
    text = "".join(f"line {i}\n" for i in range(1, 13))
    diag = Diagnostic("W001", "far apart", span_of(text, "line 11"), severity=Severity.WARNING,
                      labels=(Label(Span.at_offsets("move.sgl", text, 0, 4), "start"),))
    assert render(diag, {"move.sgl": text}) == (
        "warning[W001]: far apart\n"
        "  --> move.sgl:11:1\n"
        "   |\n"
        " 1 | line 1\n"
        "   | ---- start\n"
        " 2 | line 2\n"
        " 3 | line 3\n"
        "...\n"
        " 9 | line 9\n"
        "10 | line 10\n"
        "11 | line 11\n"
        "   | ^^^^^^^\n"
        "12 | line 12"
    )


def test_end_of_file_points_after_the_last_code():
    text = 'prompt "a dog"\nsize(dog) =  # unfinished\n\n'
    diag = Diagnostic("E002", "expected an expression, found end of file",
                      Span.at_offsets("f.sgl", text, len(text), len(text)))
    assert render(diag, {"f.sgl": text}) == (
        "error[E002]: expected an expression, found end of file\n"
        " --> f.sgl:2:12\n"
        "  |\n"
        '1 | prompt "a dog"\n'
        "2 | size(dog) =  # unfinished\n"
        "  |            ^ end of file"
    )


def test_tabs_do_not_shift_the_caret():
    text = "\tsize(dgo) = 1\n"
    diag = Diagnostic("E012", "x", span_of(text, "dgo", "t.sgl"))
    assert render(diag, {"t.sgl": text}).splitlines()[3:5] == [
        "1 |     size(dgo) = 1",
        "  |          ^^^",
    ]


def test_control_characters_are_visible():
    text = "size(dog)\x07 = 1\n"
    diag = Diagnostic("E003", "unexpected character", Span.at_offsets("c.sgl", text, 9, 10))
    assert render(diag, {"c.sgl": text}).splitlines()[3:5] == ["1 | size(dog)\u2407 = 1", "  |          ^"]


def test_multi_line_span():
    text = "fn f(o: Object) {\n    keep(o)\n}\nseed 1\n"
    diag = Diagnostic("E050", "block", Span.at_offsets("m.sgl", text, 0, text.index("}") + 1))
    assert render(diag, {"m.sgl": text}) == (
        "error[E050]: block\n"
        " --> m.sgl:1:1\n"
        "  |\n"
        "1 | / fn f(o: Object) {\n"
        "2 | |     keep(o)\n"
        "3 | | }\n"
        "  | |_^\n"
        "4 |   seed 1"
    )


def test_ascii_fallback_keeps_columns():
    text = "size₀(dgo) = 1\n"
    diag = Diagnostic("E012", "`dgo` … unknown", span_of(text, "dgo", "u.sgl"))
    lines = render(diag, {"u.sgl": text}, ascii_only=True).splitlines()
    assert lines[0] == "error[E012]: `dgo` ? unknown"
    assert lines[3:5] == ["1 | size?(dgo) = 1", "  |       ^^^"]


def test_without_source_text_only_the_location_is_shown():
    assert render(word_error(), {}) == (
        "error[E012]: `dgo` is not a word of the prompt\n"
        " --> move.sgl:4:6\n"
        "  = help: did you mean `dog`?"
    )


def test_colour_output_is_exact():
    text = "size(dgo) = 1\n"
    diag = Diagnostic("E012", "unknown", span_of(text, "dgo", "k.sgl"), hint="fix")
    assert render(diag, {"k.sgl": text}, color=True) == (
        "\x1b[1;31merror[E012]\x1b[0m\x1b[1m: unknown\x1b[0m\n"
        "\x1b[1;34m --> \x1b[0mk.sgl:1:6\n"
        "\x1b[1;34m  |\x1b[0m\n"
        "\x1b[1;34m1 | \x1b[0msize(dgo) = 1\n"
        "\x1b[1;34m  | \x1b[0m     \x1b[1;31m^^^\x1b[0m\n"
        "\x1b[1;34m  |\x1b[0m\n"
        "\x1b[1;34m  = \x1b[0m\x1b[1;36mhelp\x1b[0m: fix"
    )


def test_render_all_and_sglerror_render_agree():
    first, second = word_error(), Diagnostic("W001", "later", span_of(TEXT, "cfg"), severity=Severity.WARNING)
    error = SGLError([second, first], {"move.sgl": TEXT})
    assert error.render() == render_all([first, second], {"move.sgl": TEXT})
    assert error.render().count("\n\n") == 1


def test_json_fields():
    (entry,) = diagnostics_json([word_error()])
    assert entry == {"code": "E012", "severity": "error", "message": "`dgo` is not a word of the prompt",
                     "file": "move.sgl", "line": 4, "column": 6, "end_line": 4, "end_column": 9,
                     "hint": "did you mean `dog`?"}
    assert json.loads(render_json([word_error()])) == [entry]
    assert diagnostics_json([Diagnostic("E200", "no file")])[0]["line"] is None


def test_gutter_is_as_wide_as_the_last_line_shown():
    text = "".join(f"l{i}\n" for i in range(1, 10))
    diag = Diagnostic("E001", "m", span_of(text, "l8", "w.sgl"))
    assert render(diag, {"w.sgl": text}).splitlines()[1:3] == [" --> w.sgl:8:1", "  |"]
