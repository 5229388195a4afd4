"""The parser: grammar health, every construct, spans, both spellings, syntax diagnostics."""

from __future__ import annotations

import pytest

from sgl.diagnostics import SGLError
from sgl.syntax import ast
from sgl.syntax.parse import is_complete, parse, parse_expr


def stmt(text: str):
    """The one statement of `text`."""
    (only,) = parse(text).statements
    return only


def errors_of(text: str) -> list[tuple[str, int]]:
    with pytest.raises(SGLError) as info:
        parse(text, "bad.sgl")
    return [(d.code, d.span.line) for d in info.value.diagnostics]


# ----------------------------------------------------------------------------- grammar

def test_grammar_has_no_conflicts_in_strict_mode():
    pytest.importorskip("interegular")
    from sgl.syntax.grammar import build

    build(strict=True, cache=False)


# ----------------------------------------------------------------------------- statements

@pytest.mark.parametrize("text, name, value", [
    ('prompt "a dog"', "prompt", ast.String("a dog")),
    ("seed 7", "seed", ast.Number(7.0)),
    ("cfg 7.5", "cfg", ast.Number(7.5)),
    ("resolution 512", "resolution", ast.Number(512.0)),
    ("resolution 512x768", "resolution", ast.Resolution(512, 768)),
    ("sead 7", "sead", ast.Number(7.0)),
])
def test_settings_are_name_and_literal(text, name, value):
    assert stmt(text) == ast.Setting(name, value)


def test_number_keeps_its_spelling():
    assert stmt("cfg 7.50").value.text == "7.50"


def test_use_module_and_path():
    assert stmt("use edits") == ast.Use("edits", False)
    assert stmt('use "lib/x.sgl"') == ast.Use("lib/x.sgl", True)


def test_object_and_images():
    assert stmt('object car = "red car"') == ast.ObjectDecl("car", ast.String("red car"))
    assert stmt('image r = generate "a blue car" seed 3') == ast.GenerateImage(
        "r", ast.String("a blue car"), ast.Number(3.0))
    assert stmt('image r = generate "a blue car"').seed is None
    assert stmt('image p = load "h.png" caption "a house"') == ast.LoadImage(
        "p", ast.String("h.png"), ast.String("a house"))


def test_fn_forms():
    expr_fn = stmt("fn size(o: Object) -> Scalar = mean(shape(o))")
    assert expr_fn.returns == ast.TypeExpr("Scalar") and isinstance(expr_fn.body, ast.Call)
    inferred = stmt("fn twice(v: Scalar, k: Scalar = 2) = v * k")
    assert inferred.returns is None and inferred.params[1].default == ast.Number(2.0)
    macro = stmt("fn keep(o: Object) { shape(o) = shape₀(o); appearance(o) = appearance₀(o) }")
    assert isinstance(macro.body, tuple) and len(macro.body) == 2
    extern = stmt("extern fn others(o: Object) -> List[Object]")
    assert extern.extern and extern.body is None
    assert extern.returns == ast.TypeExpr("List", (ast.TypeExpr("Object"),))
    assert stmt("fn f() → Scalar = 1").returns == ast.TypeExpr("Scalar")


def test_multiline_block_and_empty_block():
    macro = stmt("fn f(o: Object) {\n\n    size(o) = 1\n\n    # c\n    keep(o)\n}")
    assert [type(s) for s in macro.body] == [ast.Constraint, ast.Apply]
    assert stmt("fn f() {}").body == ()


@pytest.mark.parametrize("op, canonical", [("=", "="), ("<", "<"), (">", ">"), ("<=", "<="),
                                           (">=", ">="), ("≤", "<="), ("≥", ">=")])
def test_comparisons(op, canonical):
    assert stmt(f"size(dog) {op} 0.5").op == canonical


def test_modifiers_any_order_stored_canonically():
    a = stmt("size(dog) = 1 using l2 from 10% to 50% weight 2")
    b = stmt("size(dog) = 1 weight 2 from 10% to 50% using l2")
    assert a == b
    assert [type(m) for m in a.modifiers] == [ast.Weight, ast.Window, ast.Using]
    assert a.modifiers[1] == ast.Window(10.0, 50.0)
    assert stmt("a < b margin 0.1").modifiers == (ast.Margin(ast.Number(0.1)),)


def test_a_window_may_leave_out_its_end():
    """`from A%` runs to the last step. (`to B%` alone is not a window: `from 10% to 60%` would
    then also read as two windows.)"""
    assert stmt("keep(dog) from 30%").modifiers == (ast.Window(30.0, 100.0),)
    assert stmt("size(dog) = 1 from 30% weight 2").modifiers == (ast.Weight(ast.Number(2.0)), ast.Window(30.0, 100.0))
    assert stmt("size(dog) = 1 from 30% to 60%").modifiers == (ast.Window(30.0, 60.0),)


def test_objectives_apply_for():
    assert stmt("minimize size(dog) weight 2") == ast.Objective(
        "minimize", ast.Call("size", (ast.Name("dog"),)), (ast.Weight(ast.Number(2.0)),))
    assert stmt("maximize x").kind == "maximize"
    assert stmt("keep(dog) from 0% to 50%") == ast.Apply(
        ast.Call("keep", (ast.Name("dog"),)), (ast.Window(0.0, 50.0),))
    loop = stmt("for o in others(dog) { keep(o) }")
    assert loop.var == "o" and isinstance(loop.body[0], ast.Apply)


def test_statements_end_at_newline_or_semicolon_and_brackets_join_lines():
    program = parse('prompt "a"; seed 1\n\n# note\nlet v = (0.1,\n   0.2)\nlet l = [\n a,\n b,\n]\n')
    assert [type(s) for s in program.statements] == [ast.Setting, ast.Setting, ast.Let, ast.Let]
    assert program.statements[3].value == ast.ListExpr((ast.Name("a"), ast.Name("b")))


# ----------------------------------------------------------------------------- expressions

def test_precedence():
    assert parse_expr("-a * b + c") == ast.BinOp(
        "+", ast.BinOp("*", ast.Neg(ast.Name("a")), ast.Name("b")), ast.Name("c"))
    assert parse_expr("a - b - c") == ast.BinOp(
        "-", ast.BinOp("-", ast.Name("a"), ast.Name("b")), ast.Name("c"))
    assert parse_expr("-centroid(a).x") == ast.Neg(ast.Attribute(ast.Call("centroid", (ast.Name("a"),)), "x"))
    assert parse_expr("(a + b) / 2") == ast.BinOp(
        "/", ast.BinOp("+", ast.Name("a"), ast.Name("b")), ast.Number(2.0))


def test_tuples_lists_strings():
    assert parse_expr("(0.3, 0)") == ast.Tuple((ast.Number(0.3), ast.Number(0.0)))
    assert parse_expr("(1, 2, 3)") == ast.Tuple((ast.Number(1.0), ast.Number(2.0), ast.Number(3.0)))
    assert parse_expr("[]") == ast.ListExpr(())
    assert parse_expr('mask("a \\"b\\" \\\\ \\n")') == ast.Call("mask", (ast.String('a "b" \\ \n'),))


@pytest.mark.parametrize("text, spelling", [("centroid₀(dog)", "₀"), ("centroid_0(dog)", "_0"),
                                            ("centroid[orig](dog)", "[orig]")])
def test_source_spellings_are_equal(text, spelling):
    call = parse_expr(text)
    assert call == ast.Call("centroid", (ast.Name("dog"),), ast.SourceRef("orig"))
    assert call.source.spelling == spelling


def test_image_source_and_subscript_names():
    assert parse_expr("appearance[ref](car)").source == ast.SourceRef("ref")
    assert parse_expr("x₀") == parse_expr("x_0") == ast.Name("x_0")


# ----------------------------------------------------------------------------- spans

def test_spans_are_one_based_with_exclusive_end():
    text = 'prompt "a dog"\n  size(dog) = size₀(dog) + (0.3, 0) weight 2\n'
    program = parse(text, "f.sgl")
    constraint = program.statements[1]
    assert (constraint.span.line, constraint.span.column) == (2, 3)
    assert text[constraint.span.start:constraint.span.end] == "size(dog) = size₀(dog) + (0.3, 0) weight 2"
    rhs_call = constraint.rhs.left
    assert text[rhs_call.func_span.start:rhs_call.func_span.end] == "size"
    assert text[rhs_call.source.span.start:rhs_call.source.span.end] == "₀"
    tuple_span = constraint.rhs.right.span
    assert text[tuple_span.start:tuple_span.end] == "(0.3, 0)"
    assert tuple_span.end_column - tuple_span.column == len("(0.3, 0)")
    assert program.statements[0].name_span.file == "f.sgl"


def test_comments_are_collected():
    program = parse("# head\nseed 1  # trailing\n")
    assert [c.text for c in program.comments] == ["# head", "# trailing"]
    assert program.comments[1].span.line == 2


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("text, code", [
    ('prompt "a dog"\nsize(dog) == 1\n', "E006"),
    ('prompt "a dog"\nkeep(dog) from 10 to 50%\n', "E007"),
    ('prompt "a dog"\nkeep(dog) from 10% to 50\n', "E007"),
    ('prompt "a dog"\nkeep(dog) from 10\n', "E007"),
    ('prompt "a dog"\nkeep(dog) from 10% from 20%\n', "E009"),
    ('prompt "a dog"\nfn f(o: Object)\n', "E008"),
    ('prompt "a dog"\nsize(dog = 1\n', "E005"),
    ('prompt "a dog\n', "E004"),
    ('prompt "a \\q"\n', "E004"),
    ('prompt "a dog"\nweight 2 size(dog) = 1\n', "E009"),
    ('prompt "a dog"\nsize(dog) = 1 weight 2 weight 3\n', "E009"),
    ('prompt "a dog"\nsize(dog) = @\n', "E003"),
    ('prompt "a dog"\nsize(dog) =', "E002"),
])
def test_error_codes(text, code):
    assert code in [c for c, _ in errors_of(text)]


def test_end_of_file_error_has_empty_span_at_end():
    text = 'prompt "a dog"\nsize(dog) ='
    with pytest.raises(SGLError) as info:
        parse(text)
    (diag,) = info.value.diagnostics
    assert diag.span.start == diag.span.end == len(text)
    assert "end of file" in diag.message


def test_expected_tokens_are_spelled():
    with pytest.raises(SGLError) as info:
        parse("fn f(o: Object x")
    assert "`)`" in info.value.diagnostics[0].message and "`,`" in info.value.diagnostics[0].message


def test_several_errors_reported_one_per_statement():
    found = errors_of('prompt "a dog"\nlet x =\nsize(dog) == 1\nok(dog) = 1\nkeep(dog) from 1 to 2%\n')
    assert [line for _, line in found] == [2, 3, 5]


def test_is_complete():
    assert is_complete('prompt "a"')
    assert not is_complete("fn f(o: Object) {")
    assert not is_complete("size(dog) = (1,")
    assert is_complete("fn f(o: Object) {\n keep(o)\n}")
    assert is_complete('prompt "unterminated')   # a lexer error: submit and show it


# ----------------------------------------------------------------------------- explanations

def _code_blocks(text: str) -> list[str]:
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("    "):
            current.append(line[4:])
        elif current:
            blocks.append("\n".join(current) + "\n")
            current = []
    if current:
        blocks.append("\n".join(current) + "\n")
    return blocks


@pytest.mark.parametrize("code", [f"E00{i}" for i in range(1, 10)])
def test_every_syntax_code_is_explained_with_a_failing_and_a_fixed_example(code):
    from sgl.syntax.errors import EXPLANATIONS

    blocks = _code_blocks(EXPLANATIONS[code])
    wrong, fixed = blocks[0], blocks[-1]
    assert code in [c for c, _ in errors_of(wrong)]
    parse(fixed)


def test_sgl_explain(capsys):
    from sgl.cli import main

    assert main(["explain", "e006"]) == 0
    assert capsys.readouterr().out.startswith("E006: `==` is not an SGL operator")
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "E777"])
    assert exit_.value.code == 2


def test_every_setting_has_an_example_line_that_parses_as_that_setting():
    from sgl.syntax.settings import EXAMPLES, SETTINGS

    assert set(EXAMPLES) == set(SETTINGS)
    for name, line in EXAMPLES.items():
        setting = stmt(line)
        assert isinstance(setting, ast.Setting) and setting.name == name, line


def test_a_setting_line_without_a_value_is_told_its_example():
    with pytest.raises(SGLError) as info:
        parse("seed\nobject a = \"a\"\n", "bad.sgl")
    (diag,) = info.value.diagnostics
    assert diag.code == "E008" and diag.hint == "write `seed 7`"
