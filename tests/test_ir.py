"""The energy IR: interning, lowering, passes, verifier, printer. No torch anywhere here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgl.check.types import BASE_TYPES, MAP, SCALAR, VEC2, list_of
from sgl.compiler import check_source
from sgl.diagnostics import SGLError
from sgl.ir import passes
from sgl.ir.fold import const, evaluate_const
from sgl.ir.nodes import Graph, Term
from sgl.ir.ops import COMPILE_TIME, INTRINSICS, LEAF_INTRINSICS
from sgl.ir.printer import format_ir, format_ir_json
from sgl.ir.verify import problems, verify
from sgl.ir.walk import toposort
from sgl.resources import stdlib_dir
from sgl.syntax import ast

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.sgl"))

PROMPT = 'prompt "a photo of a dog and a cat on a beach"\n'


def ir(body: str, optimize: bool = True, prompt: str = PROMPT):
    program = check_source(prompt + body, file="t.sgl", optimize=optimize)
    verify(program.terms)
    return program


def nodes(program, op: str | None = None):
    found = toposort(t.root for t in program.terms)
    return [n for n in found if op is None or n.op == op]


def error_codes(body: str, prompt: str = PROMPT) -> list[str]:
    with pytest.raises(SGLError) as info:
        check_source(prompt + body, file="t.sgl")
    return [d.code for d in info.value.errors]


# ----------------------------------------------------------------------------- interning

def test_graph_interns_equal_nodes():
    g = Graph()
    a = g.node("attn", MAP, (), ("self", ("dog",)))
    assert g.node("attn", MAP, (), ("self", ("dog",))) is a
    assert g.node("attn", MAP, (), ("orig", ("dog",))) is not a
    assert g.node("sum", SCALAR, (a,)) is g.node("sum", SCALAR, (a,))
    assert len(g) == 3


@pytest.mark.parametrize("optimize", [True, False])
def test_one_attention_input_for_an_object_read_three_times(optimize):
    program = ir("centroid(dog) = centroid₀(dog) + (0.3, 0)\n"
                 "centroid(dog).x > 0.2\n"
                 "minimize norm(centroid(dog) - (0.5, 0.5))\n", optimize)
    reads = [n.arg for n in nodes(program, "attn")]
    assert reads.count(("self", ("dog",))) == 1
    assert reads.count(("orig", ("dog",))) == 1
    assert len(program.terms) == 3


# ----------------------------------------------------------------------------- requirements

def test_requirements_list_only_what_is_read():
    program = ir('image ref = generate "a blue car in the snow" seed 3\n'
                 "size(dog) = size₀(dog)\n")
    needs = program.requirements.sources
    assert set(needs) == {"self", "orig"}
    assert needs["self"].objects == {("dog",)} and needs["orig"].objects == {("dog",)}
    assert not needs["self"].features


def test_requirements_features_sources_and_windows():
    program = ir('image ref = generate "a blue car in the snow" seed 3\n'
                 "appearance(dog) = appearance[ref](car) from 0% to 30%\n"
                 "size(cat) = 0.2 from 50% to 70%\n"
                 "size(cat) = 0.25 from 60% to 90%\n")
    needs = program.requirements.sources
    assert set(needs) == {"self", "ref"}
    assert needs["ref"].objects == {("car",)} and needs["ref"].features == {"default"}
    assert needs["ref"].windows == ((0.0, 0.3),)
    assert needs["self"].windows == ((0.0, 0.3), (0.5, 0.9))


def test_colour_reads_the_clean_latent_estimate_of_each_source():
    """`colour(o)` pools `latent()` (x̂₀), a read of its own: the runtime computes it, no layer."""
    program = ir('image ref = generate "a blue car in the snow" seed 3\n'
                 "colour(dog) = colour[ref](car)\n")
    needs = program.requirements.sources
    assert needs["ref"].features == {"latent"} and needs["self"].features == {"latent"}
    assert needs["ref"].objects == {("car",)}
    text = format_ir(program)
    assert "latent[self]()" in text and "latent[ref]()" in text and "feat[" not in text
    nodes = format_ir_json(program)["nodes"]
    assert {n["arg"]["source"] for n in nodes if n["op"] == "latent"} == {"self", "ref"}


def test_rgb_reads_the_decoded_picture_of_each_source():
    """`rgb(o)` pools `pixels()` (x̂₀ decoded), a read of its own beside `latent()`."""
    program = ir('image ref = generate "a blue car in the snow" seed 3\n'
                 "rgb(dog) = rgb[ref](car)\n")
    needs = program.requirements.sources
    assert needs["ref"].features == {"pixels"} and needs["self"].features == {"pixels"}
    text = format_ir(program)
    assert "pixels[self]()" in text and "pixels[ref]()" in text and "latent[" not in text


def test_a_feature_read_at_fewer_steps_keeps_its_own_windows():
    """The runtime decodes `pixels()` only where a term reads it: the requirements keep, per
    feature, the union of the windows of the terms that read it when that is fewer steps than
    the source records at; a feature read at every step of its source lists none."""
    program = ir("rgb(dog) = rgb₀(dog) from 0% to 40%\n"
                 "rgb(dog) = rgb₀(dog) weight 2 from 30% to 50%\n"
                 "colour(dog) = colour₀(dog)\n"
                 "centroid(dog) = (0.5, 0.5)\n")
    self_needs = program.requirements.sources["self"]
    assert self_needs.windows == ((0.0, 1.0),)
    assert self_needs.feature_windows == (("pixels", ((0.0, 0.5),)),)
    assert self_needs.windows_of("pixels") == ((0.0, 0.5),) and self_needs.windows_of("latent") == ((0.0, 1.0),)
    assert "feat latent, pixels (steps 0%–50%)" in format_ir(program)
    assert format_ir_json(program)["requirements"]["sources"]["self"]["feature_windows"] == {"pixels": [[0.0, 0.5]]}
    assert program.requirements.sources["orig"].windows == ((0.0, 1.0),)
    assert program.requirements.sources["orig"].windows_of("pixels") == ((0.0, 0.5),)
    assert ir("rgb(dog) = rgb₀(dog) from 0% to 40%\n").requirements.sources["self"].feature_windows == ()


def test_layers_setting_reaches_requirements():
    program = ir('layers "up_blocks.1"\nsize(dog) = 0.2\n')
    assert program.requirements.layers == "up_blocks.1"


def test_merge_windows():
    assert passes.merge_windows([(0.5, 0.7), (0.0, 0.2), (0.1, 0.3), (0.7, 0.8), (0.9, 0.9)]) == (
        (0.0, 0.3), (0.5, 0.8))


# ----------------------------------------------------------------------------- lowering

def test_equality_is_l1_unless_using_l2():
    program = ir("size(dog) = 0.2\nsize(cat) = 0.3 using l2\n")
    assert [(t.kind, t.distance, t.root.op) for t in program.terms] == [
        ("eq", "l1", "l1"), ("eq", "l2", "l2")]


def test_inequalities_are_hinges_with_margins():
    program = ir("size(dog) < 0.2\nsize(dog) > 0.1 margin 0.05\n", optimize=False)
    less, more = program.terms
    assert (less.kind, less.distance) == ("ineq", "hinge")
    assert less.root.op == "hinge" and less.root.inputs[0].op == "sub"
    size, bound = less.root.inputs[0].inputs
    assert size.op == "mean" and bound.arg == 0.2
    # a > b  →  hinge(b − a + margin)
    excess = more.root.inputs[0]
    assert excess.op == "add" and excess.inputs[1].arg == 0.05
    bound, size = excess.inputs[0].inputs
    assert bound.arg == 0.1 and size.op == "mean"


def test_objectives():
    program = ir("minimize size(dog)\nmaximize max(attn(cat))\n")
    low, high = program.terms
    assert (low.kind, low.distance, low.root.op) == ("objective", "objective", "mean")
    assert high.root.op == "neg" and high.root.inputs[0].op == "max"


def test_weights_and_windows():
    program = ir("size(dog) = 0.2 weight 2 * 3 from 10% to 80%\n")
    (term,) = program.terms
    assert term.weight == 6.0 and term.window == (0.1, 0.8)
    assert term.label == "size(dog) = 0.2 weight 2 * 3 from 10% to 80%"
    assert term.span.line == 2


def test_a_weight_can_depend_on_a_macro_argument_through_relu():
    body = "fn hold(o: Object, f: Scalar) { size(o) = size₀(o) weight 25 * (1 + 2.5 * relu(1 - f)) }\n"
    shrink, grow = ir(body + "hold(dog, 0.6)\nhold(cat, 1.5)\n").terms
    assert shrink.weight == pytest.approx(50.0) and grow.weight == pytest.approx(25.0)


def test_every_intrinsic_the_checker_allows_in_a_weight_is_one_the_ir_folds():
    from sgl.check.consts import NUMERIC_INTRINSICS
    from sgl.ir.fold import _EVAL
    assert NUMERIC_INTRINSICS <= set(_EVAL)


def test_macro_modifiers_multiply_weights_and_intersect_windows():
    body = ("fn hold(o: Object) { size(o) = size₀(o) weight 2 from 20% to 60% }\n"
            "hold(dog) weight 3 from 40% to 100%\n")
    (term,) = ir(body).terms
    assert term.weight == 6.0 and term.window == (0.4, 0.6)
    assert term.label.startswith("hold(dog) weight 3 from 40% to 100%")


def test_dead_terms_go_only_when_optimizing():
    body = ("fn hold(o: Object) { size(o) = size₀(o) from 0% to 30% }\n"
            "hold(dog) from 50% to 100%\n"
            "size(cat) = 0.2 weight 0\n"
            "size(dog) = 0.1\n")
    plain = ir(body, optimize=False)
    assert [t.window for t in plain.terms] == [(0.5, 0.5), (0.0, 1.0), (0.0, 1.0)]
    assert [d.code for d in plain.warnings] == ["W020"]
    optimized = ir(body)
    assert [t.label for t in optimized.terms] == ["size(dog) = 0.1"]
    assert set(optimized.requirements.sources) == {"self"}
    assert optimized.requirements.sources["self"].objects == {("dog",)}


def test_for_unrolls_over_others():
    program = ir("use edits\nfor o in others(dog) { keep(o) }\n")
    read = {n.arg[1] for n in nodes(program, "attn")}
    assert read == {("cat",), ("beach",)}
    assert all("(o = " in t.label for t in program.terms)


def test_for_over_a_list_literal():
    program = ir("for o in [dog, cat] { size(o) = 0.2 }\n")
    assert [n.arg for n in nodes(program, "attn")] == [("self", ("dog",)), ("self", ("cat",))]


def test_source_binds_every_intrinsic_inside_and_inner_source_wins():
    body = ('image ref = generate "a dog in the snow" seed 3\n'
            "fn both(o: Object) -> Scalar = size(o) + size[ref](o)\n"
            "size(dog) = both₀(dog)\n")
    program = ir(body, optimize=False)
    assert {n.arg[0] for n in nodes(program, "attn")} == {"self", "orig", "ref"}
    rhs = program.terms[0].root.inputs[1]
    assert {n.arg[0] for n in toposort([rhs]) if n.op == "attn"} == {"orig", "ref"}


def test_arguments_are_read_in_the_callers_source():
    body = "fn shifted(v: Vec2) -> Vec2 = v + (0.1, 0)\ncentroid(dog) = shifted₀(centroid(dog))\n"
    (term,) = ir(body, optimize=False).terms
    assert {n.arg[0] for n in toposort([term.root]) if n.op == "attn"} == {"self"}


def test_defaults_are_filled_in():
    (term,) = ir("fn big(o: Object, k: Scalar = 4) -> Scalar = size(o) * k\nbig(dog) = 0.5\n",
                 optimize=False).terms
    assert term.root.inputs[0].op == "mul" and term.root.inputs[0].inputs[1].arg == 4.0


def test_declared_object_reads_all_its_words():
    program = ir('object pet = "dog"\nsize(pet) = 0.2\n',
                 prompt='prompt "a small brown dog on a beach"\n')
    assert [n.arg for n in nodes(program, "attn")] == [("self", ("dog",))]


def test_objects_uses_noun_phrases():
    program = ir("for o in objects() { size(o) = 0.2 }\n",
                 prompt='prompt "a red circle and a blue square"\n')
    assert [n.arg[1] for n in nodes(program, "attn")] == [("red", "circle"), ("blue", "square")]


def test_constant_target_outside_the_image_warns():
    program = ir("centroid(dog) = (1.2, 0.5)\n")
    assert [d.code for d in program.warnings] == ["W001"]
    assert not ir("centroid(dog) = (0.2, 0.5)\n").warnings


# ----------------------------------------------------------------------------- errors

def test_object_missing_from_the_sources_prompt():
    with pytest.raises(SGLError) as info:
        check_source(PROMPT + 'image ref = generate "a blue car in the snow"\n'
                     "appearance(dog) = appearance[ref](dog)\n", file="t.sgl")
    (error,) = info.value.errors
    assert error.code == "E101" and "`dog`" in error.message and "`ref`" in error.message
    assert (error.span.line, error.span.column) == (3, 19)


def test_constraint_that_ignores_the_generated_image():
    assert error_codes("size₀(dog) = 0.3\n") == ["E103"]
    assert error_codes('image ref = generate "a blue dog"\nsize[ref](dog) = size₀(dog)\n') == ["E103"]
    assert error_codes("minimize 2 * 3\n") == ["E103"]


def test_errors_of_several_statements_are_all_reported():
    assert error_codes("size₀(dog) = 0.3\nsize(dog) = 0.2\nsize₀(cat) < 0.3\n") == ["E103", "E103"]


def test_recursion_is_caught_by_the_lowering_too():
    from sgl.check import check
    from sgl.ir.lower import lower
    from sgl.syntax.parse import parse, parse_expr

    text = PROMPT + "fn f(o: Object) -> Scalar = size(o)\nf(dog) = 0.2\n"
    checked = check(parse(text, "t.sgl"), texts={"t.sgl": text})
    (f,) = checked.functions["f"]
    looping = attrs.evolve(f, body=parse_expr("f(o) + 1"))
    with pytest.raises(SGLError) as info:
        lower(attrs.evolve(checked, functions={**checked.functions, "f": (looping,)}))
    assert [d.code for d in info.value.errors] == ["E102"]


# ----------------------------------------------------------------------------- passes

def _hand_term(g: Graph, root) -> Term:
    return Term(root, 1.0, (0.0, 1.0), "objective", "objective", "hand")


def test_folding_rules():
    g = Graph()
    a = g.node("attn", MAP, (), ("self", ("dog",)))
    s = g.node("sum", SCALAR, (a,))
    zero, one = const(g, 0.0), const(g, 1.0)
    cases = {
        g.node("add", SCALAR, (s, zero)): s,
        g.node("sub", SCALAR, (zero, s)): g.node("neg", SCALAR, (s,)),
        g.node("mul", SCALAR, (one, s)): s,
        g.node("div", SCALAR, (s, one)): s,
        g.node("mul", SCALAR, (s, zero)): zero,
        g.node("mul", MAP, (a, one)): a,
        g.node("scale", MAP, (a, one)): a,
        g.node("shift", MAP, (a, const(g, (0.0, 0.0)))): a,
        g.node("neg", SCALAR, (g.node("neg", SCALAR, (s,)),)): s,
        g.node("get_y", SCALAR, (g.node("pack", VEC2, (zero, s)),)): s,
        g.node("pack", VEC2, (const(g, 2.0), const(g, 3.0))): const(g, (2.0, 3.0)),
        g.node("add", SCALAR, (const(g, 2.0), g.node("mul", SCALAR, (const(g, 3.0), const(g, 4.0))))): const(g, 14.0),
    }
    for before, after in cases.items():
        (term,) = passes.fold_terms(g, [_hand_term(g, before)])
        assert term.root is after, f"{before!r} folded to {term.root!r}"


def test_folding_keeps_division_by_zero_for_the_runtime():
    g = Graph()
    bad = g.node("div", SCALAR, (const(g, 1.0), const(g, 0.0)))
    (term,) = passes.fold_terms(g, [_hand_term(g, bad)])
    assert term.root is bad


def test_only_identity_transforms_fold():
    g = Graph()
    a = g.node("attn", MAP, (), ("self", ("dog",)))
    for kept in (g.node("scale", MAP, (a, const(g, 0.5))), g.node("shift", MAP, (a, const(g, (0.0, 0.1))))):
        (term,) = passes.fold_terms(g, [_hand_term(g, g.node("sum", SCALAR, (kept,)))])
        assert term.root.inputs[0] is kept


def test_mul_zero_keeps_maps():
    g = Graph()
    a = g.node("attn", MAP, (), ("self", ("dog",)))
    m = g.node("mul", MAP, (a, const(g, 0.0)))
    (term,) = passes.fold_terms(g, [_hand_term(g, g.node("sum", SCALAR, (m,)))])
    assert term.root.inputs[0] is m


def test_gradient_cut_detaches_exactly_what_does_not_read_the_generated_run():
    program = ir('use edits\nimage ref = generate "a dog in the snow"\n'
                 "move(dog, (0.2, 0))\nappearance(cat) = appearance₀(cat) + appearance[ref](dog)\n")
    reads = passes.source_reads(t.root for t in program.terms)
    for node in nodes(program):
        if node.op == "detach":
            assert "self" not in reads[node] and reads[node]
        elif "self" in reads[node]:
            for i in node.inputs:  # every edge from the live part into a run-reading constant is cut
                assert not reads[i] or "self" in reads[i] or i.op == "detach"
    assert nodes(program, "detach")
    assert not nodes(ir("size(dog) = 0.2\n"), "detach")


def test_optimizing_twice_changes_nothing():
    program = ir("use edits\nmove(dog, (0.2, 0))\nfor o in others(dog) { keep(o) }\n")
    assert format_ir(passes.optimize(program)) == format_ir(program)


def test_passes_keep_requirements_of_live_terms():
    body = "use edits\nmove(dog, (0.2, 0)) from 10% to 50%\nfor o in others(dog) { keep(o) }\n"
    assert ir(body).requirements == ir(body, optimize=False).requirements


# Random constant expressions: folded value == Python's value == unfolded evaluation.
def _exprs(depth: int):
    leaf = st.integers(0, 9).map(lambda n: (str(n), float(n)))
    if depth == 0:
        return leaf

    def binop(pair):
        (ta, va), (tb, vb), op = pair
        if op == "/" and vb == 0:
            return f"({ta} + {tb})", va + vb
        value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va / vb if vb else 0}[op]
        return f"({ta} {op} {tb})", value

    sub = _exprs(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, sub, st.sampled_from("+-*/")).map(binop),
        sub.map(lambda p: (f"-{p[0]}", -p[1])),
        st.tuples(sub, sub, st.sampled_from(["x", "y"])).map(
            lambda t: (f"({t[0][0]}, {t[1][0]}).{t[2]}", t[0][1] if t[2] == "x" else t[1][1])),
    )


@settings(max_examples=40, deadline=None)
@given(_exprs(3))
def test_constant_folding_agrees_with_python(case):
    text, expected = case
    folded = ir(f"size(dog) = {text}\n").terms[0].root.inputs[1]
    unfolded = ir(f"size(dog) = {text}\n", optimize=False).terms[0].root.inputs[1]
    assert folded.op == "const"
    assert folded.arg == pytest.approx(expected) == evaluate_const(unfolded)


# ----------------------------------------------------------------------------- verifier

def test_verifier_rejects_malformed_nodes_and_terms():
    g = Graph()
    a = g.node("attn", MAP, (), ("self", ("dog",)))
    wrong_type = g.node("sum", VEC2, (a,))
    bad_arity = g.node("add", SCALAR, (a,))
    bad_leaf = g.node("attn", MAP, (), ("self", ()))
    found = problems([
        Term(wrong_type, 1.0, (0.0, 1.0), "objective", "objective", ""),
        Term(g.node("sum", SCALAR, (bad_leaf,)), 1.0, (0.5, 0.2), "eq", "hinge", ""),
        Term(bad_arity, float("nan"), (0.0, 1.0), "objective", "objective", ""),
    ])
    text = "\n".join(found)
    for fragment in ("root is Vec2", "window", "kind `eq` cannot have distance `hinge`",
                     "malformed arg", "does not accept (Map)", "not a finite float", "typed Vec2"):
        assert fragment in text


def _type(t: ast.TypeExpr):
    if t.name == "List":
        return list_of(_type(t.args[0]))
    return BASE_TYPES[t.name]


def test_op_table_matches_the_prelude():
    from sgl.syntax.parse import parse

    prelude = parse((stdlib_dir() / "prelude.sgl").read_text(encoding="utf-8"), "stdlib/prelude.sgl")
    declared: dict[str, set] = {}
    for fn in prelude.statements:
        if isinstance(fn, ast.FnDef):
            signature = (tuple(_type(p.type) for p in fn.params), _type(fn.returns))
            declared.setdefault(fn.name, set()).add(signature)
    for name, signatures in declared.items():
        if name in COMPILE_TIME:
            continue
        if name in LEAF_INTRINSICS:
            assert {s[1] for s in signatures} == {LEAF_INTRINSICS[name]}
            continue
        assert signatures <= set(INTRINSICS[name]), name
    assert set(INTRINSICS) <= set(declared)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("optimize", [True, False])
def test_examples_lower_to_well_formed_ir(path, optimize):
    program = check_source(path.read_text(encoding="utf-8"), file=str(path), optimize=optimize)
    verify(program.terms)
    assert program.terms


# ----------------------------------------------------------------------------- printer

def test_printer_names_shared_nodes_once():
    text = format_ir(ir("centroid(dog) = centroid₀(dog) + (0.3, 0)\ncentroid(dog).x > 0.2\n"))
    assert text.count("attn[self](dog)") == 1 and text.count("attn[orig](dog)") == 1
    assert re.search(r"^term 0  l1  w=1  0%–100%  t\.sgl:2  centroid\(dog\) = centroid₀\(dog\) \+ \(0\.3, 0\)  → %\d+$",
                     text, re.M)
    assert re.search(r"^  orig: attn dog; steps 0%–100%$", text, re.M)
    assert re.search(r"^%\d+ = add %\d+, \(0\.3, 0\)  : Vec2$", text, re.M)


def test_printer_is_deterministic():
    body = "use edits\nfor o in others(dog) { keep(o) }\nmove(dog, (0.2, 0))\n"
    assert format_ir(ir(body)) == format_ir(ir(body))


def test_json_matches_text():
    program = ir("fn hold(o: Object) { size(o) = size₀(o); centroid(o) = centroid₀(o) weight 3 }\n"
                 "hold(dog) weight 2\n")
    data = format_ir_json(program)
    assert [t["weight"] for t in data["terms"]] == [2.0, 6.0]
    for node in data["nodes"]:
        assert all(i < node["id"] for i in node["inputs"])
    assert data["requirements"]["sources"]["orig"]["attn"] == [["dog"]]


def test_a_bug_in_the_lowering_becomes_an_internal_error(monkeypatch):
    import sgl.ir.lower

    def broken(checked, optimize=True):
        raise KeyError("oops")

    monkeypatch.setattr(sgl.ir.lower, "lower", broken)
    with pytest.raises(SGLError) as info:
        check_source(PROMPT + "size(dog) = 0.2\n", file="t.sgl")
    (error,) = info.value.errors
    assert error.code == "E999" and "KeyError" in error.message and "t.sgl" in info.value.sources


def test_every_lowering_code_is_explained_and_its_examples_work():
    from sgl.ir import errors

    used = set(re.findall(r'Diagnostic\(\s*"([EW]\d{3})"', Path(errors.__file__).read_text(encoding="utf-8")))
    assert used == set(errors.EXPLANATIONS) == set(errors.EXAMPLES)
    for code, (bad, good) in errors.EXAMPLES.items():
        try:
            found = check_source(bad, file="bad.sgl").warnings
        except SGLError as error:
            found = error.diagnostics
        # Recursion is caught by the checker first (E037); the lowering's E102 is a guard.
        assert {"E102": "E037"}.get(code, code) in [d.code for d in found]
        assert not check_source(good, file="good.sgl").warnings


def test_sgl_ir_command(tmp_path, capsys):
    import json

    from sgl.cli import main

    program = tmp_path / "p.sgl"
    program.write_text(PROMPT + "size(dog) = 0.1 + 0.2\n", encoding="utf-8")
    assert main(["ir", str(program)]) == 0
    out = capsys.readouterr().out
    assert "(optimized)" in out and re.search(r"^%\d+ = l1 %\d+, 0\.3", out, re.M)
    assert main(["ir", str(program), "--no-opt"]) == 0
    assert re.search(r"^%\d+ = add 0\.1, 0\.2", capsys.readouterr().out, re.M)
    assert main(["ir", str(program), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["terms"][0]["distance"] == "l1"
    program.write_text(PROMPT + "size₀(dog) = 0.1\n", encoding="utf-8")
    assert main(["ir", str(program)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "E103" in captured.err and "Traceback" not in captured.err


# ----------------------------------------------------------------------------- layering

def test_compiler_half_does_not_import_torch():
    code = ("import sys, sgl.compiler, sgl.ir.lower, sgl.ir.passes, sgl.ir.printer, sgl.ir.verify\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- sources as parameters

REF = 'image ref = generate "a dog and a cat in the snow" seed 3\n'


def _read_sources(program) -> list[set[str]]:
    """The sources each term reads, in term order."""
    return [{n.arg[0] for n in toposort([t.root]) if n.op == "attn"} for t in program.terms]


def test_an_image_parameter_names_the_source_of_the_calls_inside():
    macro = "fn take(o: Object, r: Image = orig) { size(o) = size[r](o) }\n"
    passed = ir(REF + macro + "take(dog, orig)\ntake(dog, ref)\ntake(cat)\n")
    written = ir(REF + "size(dog) = size₀(dog)\nsize(dog) = size[ref](dog)\nsize(cat) = size₀(cat)\n")
    assert _read_sources(passed) == [{"self", "orig"}, {"self", "ref"}, {"self", "orig"}]
    graph = lambda program: [line for line in format_ir(program).splitlines() if line.startswith("%")]
    assert graph(passed) == graph(written)


def test_a_for_variable_and_a_let_can_hold_the_source():
    program = ir(REF + "let r = ref\nfor s in [ref, orig] { size(dog) = size[s](dog) }\nsize(cat) = size[r](cat)\n")
    assert _read_sources(program) == [{"self", "ref"}, {"self", "orig"}, {"self", "ref"}]


def test_a_parameter_shadows_an_image_of_the_same_name():
    program = ir(REF + "fn take(o: Object, ref: Image) { size(o) = size[ref](o) }\ntake(dog, orig)\n")
    assert _read_sources(program) == [{"self", "orig"}]


def test_an_image_parameter_whose_caption_lacks_the_object_is_a_lowering_error():
    """E101 points at the read inside the function and labels the statement that passed the image."""
    with pytest.raises(SGLError) as info:
        check_source(PROMPT + 'image ref = generate "a blue car" seed 3\n'
                     "fn take(o: Object, r: Image) { size(o) = size[r](o) }\ntake(dog, ref)\n", file="t.sgl")
    (d,) = info.value.errors
    assert d.code == "E101" and d.span.line == 3
    assert [(label.span.line, label.message) for label in d.labels] == [(4, "`ref` is passed here")]
