"""Ranges known before sampling (sgl/ir/ranges.py) and the warnings built on them (W001,
W021, W022): the ranges are checked against the evaluator on random maps, for the stdlib's
properties and for generated expressions over them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgl.compiler import check_source
from sgl.diagnostics import SGLError
from sgl.ir.ranges import value_range
from sgl.runtime.evaluate import Evaluator, Inputs

HEAD = 'prompt "a red circle and a blue square"\nuse edits\n'
F64 = torch.float64


def warnings(body: str) -> list[tuple[str, int]]:
    try:
        found = check_source(HEAD + body, file="t.sgl").warnings
    except SGLError as error:
        found = error.diagnostics
    return [(d.code, d.span.line) for d in found]


# ----------------------------------------------------------------------------- warnings

def test_a_bound_beyond_the_image_can_never_hold():
    assert warnings("centroid(circle).x > 1.2\n") == [("W021", 3)]
    assert warnings("centroid(circle).y < -0.1\n") == [("W021", 3)]
    assert warnings("size(circle) >= 1.5\n") == [("W021", 3)]
    assert warnings("centroid(circle).x < 0.9 margin 1.5\n") == [("W021", 3)]


def test_a_bound_every_image_meets_always_holds():
    assert warnings("centroid(circle).x < 1.2\n") == [("W022", 3)]
    assert warnings("size(circle) >= 0\n") == [("W022", 3)]


def test_bounds_inside_the_range_are_quiet():
    assert warnings("centroid(circle).x > 0.7\ncentroid(circle).x < centroid(square).x - 0.1\n"
                    "max(attn(circle)) > 0.8\nsize(circle) = 0.3\n") == []


def test_a_target_out_of_reach():
    assert warnings("size(circle) = 1.5\n") == [("W021", 3)]
    assert warnings("max(attn(square)) = -0.1\n") == [("W021", 3)]


def test_a_difference_of_points_is_not_a_point():
    """A constant Vec2 beside arithmetic on centroids is no target in the image: (-0.3, 0) is a
    fine offset (this used to warn W001)."""
    assert warnings("centroid(circle) - centroid(square) = (-0.3, 0)\n") == []
    assert warnings("centroid(circle) - centroid(square) = (-1.3, 0)\n") == [("W021", 3)]


def test_points_through_functions_and_lets_are_points():
    assert warnings("let p = centroid(circle)\np = (1.5, 0)\n") == [("W001", 4)]
    assert warnings("fn c(o: Object) -> Vec2 = centroid(o)\nc(square) = (0.5, -1)\n") == [("W001", 4)]


def test_macro_arguments_are_judged_at_the_call():
    assert warnings("left_of(circle, square, 1.2)\n") == [("W021", 3)]
    assert warnings("apart(circle, square, 2)\n") == [("W021", 3)]
    assert warnings("apart(circle, square, 0.3)\n") == []
    assert warnings("inside(circle, square, 1.1)\n") == [("W021", 3)]
    assert warnings("excite(circle, 1.5)\n") == [("W021", 3)]
    assert warnings("no_overlap(circle, square, 1.5)\n") == [("W022", 3)]
    assert warnings("move_to(circle, (1.2, 0.5))\n") == [("W001", 3)]


def test_the_note_gives_both_ranges():
    (w,) = check_source(HEAD + "apart(circle, square, 2)\n", file="t.sgl").warnings
    assert "left side lies in [0, 1.41]" in w.notes[0] and "right side is 2" in w.notes[0]


def test_a_constraint_on_constants_is_an_error_not_also_a_warning():
    assert warnings("size₀(circle) > 1.5\n") == [("E103", 3)]


# ----------------------------------------------------------------------------- soundness

ATOMS = [
    "size(circle)", "centroid(circle).x", "centroid₀(square).y", "max(attn(square))",
    "min(shape(circle))", "mass_in(circle, shape(square))", "overlap(circle, square)",
    "norm(centroid(circle) - centroid(square))", "dot(centroid(circle), centroid(square))",
    "mean(silhouette(square))", "sum(attn(circle))", "mean(shift(shape(circle), (0.2, -0.1)))",
    "mean(box(0.1, 0.2, 0.5, 0.9) - shape(square))", "mass_in(square, scale(silhouette₀(square), 1.5))",
    "centroid_of(box(0.2, 0.2, 0.4, 0.3) * attn(circle)).x",
]

expressions = st.recursive(
    st.one_of(st.sampled_from(ATOMS), st.sampled_from(["0.5", "2", "-1", "0.1"])),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from("+-*/"), inner),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["relu", "abs", "sqrt", "-"]), inner)),
    max_leaves=5)


def _inputs(program, seed: int) -> tuple[Evaluator, Inputs]:
    evaluator = Evaluator(program.terms, grid=(6, 6), dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    keys = set().union(*(evaluator.needs(i, 10) for i in range(10)))
    attn, feats = {}, {}
    for kind, source, what in sorted(keys, key=repr):
        # attention probabilities, some maps nearly empty, some peaked
        value = torch.rand(1, 4, 4, generator=gen, dtype=F64) ** float(torch.randint(1, 6, (1,), generator=gen))
        attn[(source, what)] = value
    return evaluator, Inputs(attn, feats)


@settings(max_examples=60, deadline=None)
@given(expressions, st.integers(0, 2 ** 16))
def test_every_value_lies_in_its_range(expr, seed):
    try:
        program = check_source(HEAD + f"minimize {expr}\n", file="t.sgl", optimize=False)
    except SGLError as error:    # a constant expression does not read the image: E103
        assert {d.code for d in error.errors} == {"E103"}
        return
    (term,) = program.terms
    found = value_range(term.root)
    evaluator, inputs = _inputs(program, seed)
    value = evaluator(0, 10, inputs).values[0]
    if found is None or value is None or not math.isfinite(float(value[0])):
        return
    (lo, hi), v = found[0], float(value[0])
    assert lo - 1e-9 * max(1.0, abs(lo)) <= v <= hi + 1e-9 * max(1.0, abs(hi)), (expr, found, v)


@pytest.mark.parametrize("atom", ATOMS)
def test_every_atom_has_a_bounded_range(atom):
    program = check_source(HEAD + f"minimize {atom} + size(circle)\n", file="t.sgl", optimize=False)
    found = value_range(program.terms[0].root)
    assert found is not None and (atom.startswith("sum(") or all(map(math.isfinite, found[0])))
