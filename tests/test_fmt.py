"""The formatter: canonical layout, comments kept, idempotent, same AST after formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgl.diagnostics import SGLError
from sgl.syntax import ast
from sgl.syntax.fmt import format_program, format_source
from sgl.syntax.parse import parse

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted([*ROOT.glob("examples/*.sgl"), *ROOT.glob("tests/good/**/*.sgl"),
                 *ROOT.glob("stdlib/*.sgl")])


@pytest.mark.parametrize("path", CORPUS, ids=[str(p.relative_to(ROOT)) for p in CORPUS])
def test_corpus_round_trip(path):
    text = path.read_text(encoding="utf-8")
    once = format_source(text, path.name)
    assert parse(once) == parse(text)
    assert format_source(once, path.name) == once
    comments = [c.text for c in parse(text).comments]
    assert [c.text for c in parse(once).comments] == comments


def test_canonical_spacing_and_modifier_order():
    text = ('prompt   "a dog"\nsize( dog )=size₀(dog)+( 0.3,0 )   using l2 from 0% to 50% weight 2\n'
            "a<b   margin 0.1\nmaximize   x\n")
    assert format_source(text) == (
        'prompt "a dog"\n'
        "size(dog) = size₀(dog) + (0.3, 0) weight 2 from 0% to 50% using l2\n"
        "a < b margin 0.1\n"
        "maximize x\n"
    )


def test_statements_split_and_blocks_indented():
    text = "fn keep(o: Object) { shape(o) = shape_0(o); appearance(o) = appearance[orig](o) }\n"
    assert format_source(text) == (
        "fn keep(o: Object) {\n"
        "    shape(o) = shape_0(o)\n"
        "    appearance(o) = appearance[orig](o)\n"
        "}\n"
    )


def test_short_single_statement_block_stays_on_one_line():
    assert format_source("for o in others(dog) {\n  keep(o)\n}\n") == "for o in others(dog) { keep(o) }\n"
    assert format_source("fn f() {\n}\n") == "fn f() {}\n"


def test_parentheses_only_where_needed():
    cases = {
        "let v = (a + b) * c": "let v = (a + b) * c",
        "let v = a - (b - c)": "let v = a - (b - c)",
        "let v = (a - b) - c": "let v = a - b - c",
        "let v = -(a + b)": "let v = -(a + b)",
        "let v = ((centroid(a))).x": "let v = centroid(a).x",
        "let v = (a + b).x": "let v = (a + b).x",
        "let v = a / (b * c)": "let v = a / (b * c)",
        "let v = - -a": "let v = -(-a)",
    }
    for text, expected in cases.items():
        assert format_source(text) == expected + "\n", text


def test_numbers_as_written_strings_reescaped_unicode_spellings():
    text = 'cfg 7.50\nresolution 512x768\nprompt "say \\"hi\\"\\n"\nsize(a) ≤ 0.10\n'
    assert format_source(text) == 'cfg 7.50\nresolution 512x768\nprompt "say \\"hi\\"\\n"\nsize(a) <= 0.10\n'


def test_comments_own_line_trailing_and_inside_blocks():
    text = (
        "# header\n"
        "\n"
        "\n"
        "seed 1   # the seed\n"
        "steps 2 # the steps\n"
        "fn f(o: Object) {  # a macro\n"
        "    # first\n"
        "    keep(o)\n"
        "    # last\n"
        "}  # end\n"
        "let l = [\n"
        "    a,  # inside\n"
        "]\n"
        "# tail\n"
    )
    assert format_source(text) == (
        "# header\n"
        "\n"
        "seed 1   # the seed\n"
        "steps 2  # the steps\n"
        "fn f(o: Object) {  # a macro\n"
        "    # first\n"
        "    keep(o)\n"
        "    # last\n"
        "}  # end\n"
        "# inside\n"
        "let l = [a]\n"
        "# tail\n"
    )


def test_a_formatter_bug_is_an_internal_error_not_a_changed_program(monkeypatch):
    import sgl.syntax.fmt as fmt

    monkeypatch.setattr(fmt, "modifiers", lambda items: "")  # simulate a bug: modifiers dropped
    with pytest.raises(SGLError) as info:
        fmt.format_source("size(dog) = 1 weight 2\n")
    (diag,) = info.value.diagnostics
    assert diag.code == "E999" and "formatter changed the program" in diag.message


def test_formats_a_program_built_without_source_text():
    program = ast.Program((ast.Setting("seed", ast.Number(3.0, "3")),
                           ast.Constraint("<", ast.Name("a"), ast.Neg(ast.Number(1.0, "1")))))
    assert format_program(program) == "seed 3\na < -1\n"
