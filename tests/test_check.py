"""The checker: imports, settings, names, types, modifiers, constants — each rule from both
sides (a program that follows it checks, one that breaks it gets the rule's code)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from sgl.check import check
from sgl.check.types import MAP, OBJECT, SCALAR, VEC2, VECTOR, list_of
from sgl.diagnostics import SGLError
from sgl.syntax import ast
from sgl.syntax.parse import parse
from sgl.syntax.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
HEAD = 'prompt "a photo of a dog and a cat on a beach"\n'


def checked(src: str, files: dict[str, str] | None = None, file: str = "main.sgl"):
    files = dict(files or {})

    def loader(path: str) -> str:
        return files[path]

    return check(parse(src, file), texts={file: src}, loader=loader)


def failure(src: str, files: dict[str, str] | None = None, file: str = "main.sgl") -> SGLError:
    with pytest.raises(SGLError) as info:
        checked(src, files, file)
    return info.value


def codes(src: str, files: dict[str, str] | None = None) -> list[tuple[str, int]]:
    """(code, line) of every error of the first failing phase, in order."""
    return [(d.code, d.span.line) for d in failure(src, files).errors]


def only(src: str, files=None):
    """The single error of `src`."""
    (d,) = failure(src, files).errors
    return d


# ----------------------------------------------------------------------------- a whole program

def test_a_full_program_checks_and_records_what_lowering_needs():
    src = HEAD + """seed 7
use edits
object pet = "dog"
image ref = generate "a blue car in the snow" seed 3
let offset = (0.3, 0)
centroid(dog) = centroid₀(dog) + offset
appearance(dog) = appearance[ref](car) weight 2 from 10% to 90%
for o in others(dog) { keep(o) }
"""
    c = checked(src)
    assert c.settings == {"prompt": "a photo of a dog and a cat on a beach", "seed": 7}
    assert c.prompt_words == ("a", "photo", "of", "a", "dog", "and", "a", "cat", "on", "a", "beach")
    assert c.objects["pet"].words == ("dog",) and c.objects["pet"].declared
    assert c.objects["car"].words == ("car",) and not c.objects["car"].declared
    assert set(c.sources) == {"self", "orig", "ref"}
    assert c.sources["ref"].kind == "generate" and c.sources["ref"].seed == 3
    assert c.sources["ref"].prompt == "a blue car in the snow"
    assert [type(s) for s in c.body] == [ast.Constraint, ast.Constraint, ast.For]
    assert set(c.lets) == {"offset"}
    assert "keep" in c.functions and len(c.functions["norm"]) == 2
    first = c.body[0]
    assert c.types[id(first.lhs)] == VEC2 and c.types[id(first.rhs)] == VEC2
    assert c.types[id(c.body[2].iterable)] == list_of(OBJECT)
    assert c.refs[id(first.rhs.right)] == "let"
    assert c.refs[id(first.lhs.args[0])] == "object"


def test_checked_program_records_the_overload_each_call_chose():
    src = HEAD + "minimize norm(centroid(dog))\nminimize norm(appearance(dog))\n"
    c = checked(src)
    vec2 = c.calls[id(c.body[0].expr)]
    vector = c.calls[id(c.body[1].expr)]
    assert vec2 is not vector
    assert vec2.params[0].type.name == "Vec2" and vector.params[0].type.name == "Vector"


def test_macro_parameter_and_for_variable_are_local_refs():
    c = checked(HEAD + "fn f(o: Object) { size(o) = size₀(o) }\nfor p in [dog, cat] { f(p) }\n")
    loop = c.body[0]
    assert c.refs[id(loop.body[0].call.args[0])] == "local"
    fn = c.functions["f"][0]
    assert c.refs[id(fn.body[0].lhs.args[0])] == "local"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.sgl")), ids=lambda p: p.name)
def test_every_example_checks_cleanly(path):
    text = path.read_text()
    c = check(parse(text, str(path)), texts={str(path): text})
    assert c.body, "an example should constrain something"
    assert not c.warnings


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "good").glob("*.sgl")), ids=lambda p: p.name)
def test_good_programs_check(path):
    text = path.read_text()
    check(parse(text, str(path)), texts={str(path): text})


# ----------------------------------------------------------------------------- settings

def test_settings_of_every_kind_become_python_values():
    src = ('prompt "a dog"\nnegative "blurry"\nseed 0\nsteps 20\ncfg 7.5\nstrength 30\n'
           'resolution 512x768\nmodel "shapes"\nscheduler "ddim"\nlayers "up_blocks.1"\n')
    assert checked(src).settings == {
        "prompt": "a dog", "negative": "blurry", "seed": 0, "steps": 20, "cfg": 7.5, "strength": 30.0,
        "resolution": (512, 768), "model": "shapes", "scheduler": "ddim", "layers": "up_blocks.1"}
    assert checked('prompt "a dog"\nresolution 256\n').settings["resolution"] == (256, 256)


def test_unknown_setting_suggests_the_known_one():
    d = only(HEAD + "sead 7\n")
    assert (d.code, d.span.line) == ("E020", 2) and "`seed`" in d.hint


def test_duplicate_setting_points_at_the_first():
    d = only(HEAD + "seed 1\nseed 2\n")
    assert d.code == "E021" and d.span.line == 3 and d.labels[0].span.line == 2


@pytest.mark.parametrize("line", ['seed "7"', "seed 1.5", "steps 2.0", 'cfg "high"', "prompt 3",
                                  "resolution 1.5", 'resolution "big"'])
def test_setting_of_the_wrong_kind(line):
    src = line + "\n" + ('prompt "a dog"\n' if not line.startswith("prompt") else 'negative "x"\n')
    assert "E022" in [c for c, _ in codes(src)]


@pytest.mark.parametrize("line", ["steps 0", "resolution 0", "recurrence_until 1.5", "recurrence_above 2",
                                  "recurrence_early 1.5"])
def test_setting_out_of_range(line):
    assert codes(HEAD + line + "\n") == [("E024", 2)]


# A setting given outside the program (`--set`, a REPL flag, `sgl.compile(…, seed=3)`) meets the
# same rules as its line would, with the same codes; it has no span, so a note says where it came from.
OVERRIDE_CASES = [
    ({"warmup": 2}, ["E024"]), ({"steps": 0}, ["E024"]), ({"seed": -1}, ["E024"]),
    ({"sead": 3}, ["E020"]), ({"seed": 1.5}, ["E022"]), ({"cfg": True}, ["E022"]),
    ({"cfg": "high"}, ["E022"]), ({"resolution": "big"}, ["E022"]), ({"scheduler": "eular"}, ["E025"]),
    ({"gradient": "units"}, ["E028"]), ({"recurrence": 3, "scheduler": "pndm"}, ["E029"]),
    ({"steps": 0, "sead": 3, "warmup": -0.5}, ["E020", "E024", "E024"]), ({"cfg": float("nan")}, ["E022"]),
    ({"resolution": "64y64"}, ["E022"]), ({"resolution": (64, 0)}, ["E024"]), ({"sead": None}, ["E020"]),
    ({"recurrence_until": -0.1}, ["E024"]), ({"recurrence_above": 1.5}, ["E024"]),
    ({"recurrence_early": 2}, ["E024"]),
]


@pytest.mark.parametrize("overrides,expected", OVERRIDE_CASES)
def test_overrides_are_checked_like_program_lines(overrides, expected):
    import sgl

    with pytest.raises(SGLError) as info:
        sgl.compile(HEAD, **overrides)
    assert sorted(d.code for d in info.value.diagnostics) == expected
    assert all("given outside the program" in d.notes[-1] for d in info.value.diagnostics)


def test_good_overrides_become_the_values_a_line_would_give():
    import sgl

    program = sgl.compile(HEAD, seed=3.0, resolution=64, warmup=1, num_inference_steps=4, scheduler="euler",
                          cfg=5, strength=None)
    got = {k: program.settings[k] for k in ("seed", "resolution", "warmup", "steps", "scheduler", "cfg")}
    assert got == {"seed": 3, "resolution": (64, 64), "warmup": 1.0, "steps": 4, "scheduler": "euler", "cfg": 5.0}
    assert isinstance(program.settings["seed"], int) and program.settings["strength"] is None
    assert sgl.compile(HEAD + "recurrence 3\n", recurrence=1, scheduler="pndm").settings["recurrence"] == 1
    assert sgl.compile(HEAD, resolution="64x32").settings["resolution"] == (64, 32)


_ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.floats(allow_nan=True),
                       st.text(max_size=12), st.tuples(st.integers(-5, 600), st.integers(-5, 600)),
                       st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from(sorted(SETTINGS)), st.text(max_size=8)), _ANY_VALUE, max_size=4))
def test_any_override_compiles_or_gets_a_diagnostic(overrides):
    import sgl

    try:
        program = sgl.compile(HEAD, **overrides)
    except SGLError as error:
        assert error.diagnostics and all(d.code.startswith("E0") for d in error.diagnostics)
        return
    for key, value in overrides.items():
        assert key in SETTINGS and (value is None or program.settings[key] is not None)


def test_missing_prompt_is_reported_at_the_start_of_the_file():
    d = only("seed 7\n")
    assert d.code == "E023" and (d.span.line, d.span.column) == (1, 1)


# ----------------------------------------------------------------------------- imports

def test_edits_are_only_visible_after_use():
    checked(HEAD + "use edits\nkeep(dog)\n")
    d = only(HEAD + "keep(dog)\n")
    assert d.code == "E030" and "use edits" in d.hint


def test_unknown_stdlib_module_suggests():
    d = only(HEAD + "use edit\n")
    assert d.code == "E010" and "`edits`" in d.hint


def test_use_of_a_file_relative_to_the_importer():
    lib = "fn twice(v: Scalar) = v * 2\n"
    c = checked(HEAD + 'use "lib/more.sgl"\nsize(dog) = twice(size₀(dog))\n',
                {"sub/lib/more.sgl": lib}, file="sub/main.sgl")
    assert "twice" in c.functions and "sub/lib/more.sgl" in c.texts


def test_missing_import_file():
    assert codes(HEAD + 'use "nowhere.sgl"\n') == [("E011", 2)]


def test_import_cycle_shows_the_chain():
    files = {"a.sgl": 'use "b.sgl"\n', "b.sgl": 'use "a.sgl"\n'}
    d = only(HEAD + 'use "a.sgl"\n', files)
    assert d.code == "E012" and "`a.sgl` → `b.sgl` → `a.sgl`" in d.message
    assert d.span.file == "b.sgl"


def test_a_file_used_twice_is_read_once():
    files = {"a.sgl": 'use "c.sgl"\n', "b.sgl": 'use "c.sgl"\n', "c.sgl": "let k = 1\n"}
    checked(HEAD + 'use "a.sgl"\nuse "b.sgl"\nsize(dog) = size₀(dog) weight k\n', files)


@pytest.mark.parametrize("line", ["seed 3", "size(dog) = 0.5", 'image r = generate "a dog"'])
def test_imported_files_only_define(line):
    d = only(HEAD + 'use "lib.sgl"\n', {"lib.sgl": line + "\n"})
    assert d.code == "E013" and d.span.file == "lib.sgl"


def test_error_inside_an_import_carries_the_use_chain():
    files = {"a.sgl": 'use "b.sgl"\n', "b.sgl": "fn f(o: Object) -> Scalar = size(o) + centroid(o)\n"}
    d = only(HEAD + 'use "a.sgl"\n', files)
    assert d.code == "E050" and d.span.file == "b.sgl"
    assert [s.file for s in d.included_from] == ["a.sgl", "main.sgl"]


def test_syntax_error_inside_an_import_carries_the_use_chain():
    err = failure(HEAD + 'use "a.sgl"\n', {"a.sgl": "fn f( = 1\n"})
    assert err.errors and all(d.span.file == "a.sgl" and d.included_from for d in err.errors)


def test_extern_only_in_the_stdlib():
    assert codes(HEAD + "extern fn magic(o: Object) -> Map\n") == [("E014", 2)]


# ----------------------------------------------------------------------------- names

def test_a_word_not_in_the_prompt_suggests_the_nearest_word():
    d = only(HEAD + "size(dgo) = 0.5\n")
    assert (d.code, d.message, d.hint) == ("E031", "`dgo` is not a word of the prompt", "did you mean `dog`?")


def test_unknown_name_suggests_names_in_scope_too():
    d = only(HEAD + "let offset = (0.1, 0)\ncentroid(dog) = centroid₀(dog) + ofset\n")
    assert "`offset`" in d.hint and d.labels and d.labels[0].span.line == 2


def test_caption_words_are_objects_and_phrases_may_come_from_a_caption():
    src = HEAD + 'image r = generate "a red car"\nobject rc = "red car"\nsize(dog) = size[r](car)\n'
    c = checked(src)
    assert c.objects["rc"].words == ("red", "car") and "car" in c.objects


def test_object_phrase_must_come_from_the_prompt():
    d = only(HEAD + 'object d = "big dgo"\n')
    assert d.code == "E034" and "`big`" in d.message


def test_unknown_function_suggests():
    d = only(HEAD + "centorid(dog) = (0.5, 0.5)\n")
    assert d.code == "E030" and d.hint == "did you mean `centroid`?"


def test_unknown_source_suggests():
    d = only(HEAD + 'image ref = generate "a dog"\nsize(dog) = size[rf](dog)\n')
    assert d.code == "E032" and "`ref`" in d.hint


@pytest.mark.parametrize("spelling", ["size₀(dog)", "size_0(dog)", "size[orig](dog)"])
def test_orig_spellings(spelling):
    c = checked(HEAD + f"size(dog) = {spelling}\n")
    assert c.body[0].rhs.source.name == "orig"


@pytest.mark.parametrize("src, first_line", [
    ("fn f(v: Scalar) = v\nfn f(v: Scalar) = v\n", 2),
    ("let a = 1\nlet a = 2\n", 2),
    ('let dog = 1\nobject dog = "dog"\n', 2),
    ("fn size(o: Object) -> Scalar = 1\n", 1),
])
def test_duplicate_definitions(src, first_line):
    d = only(HEAD + src)
    assert d.code == "E033" and d.span.line == first_line + 1


def test_values_and_functions_are_separate_namespaces():
    checked(HEAD + "let x = 0.5\ncentroid(dog).x = x\nminimize sum(x() * attn(dog))\n")


def test_function_used_as_a_value():
    assert codes(HEAD + "size(dog) = size\n") == [("E035", 2)]


def test_unknown_type_suggests():
    d = only(HEAD + "fn f(v: Scalr) = v\n")
    assert d.code == "E036" and "`Scalar`" in d.hint


def test_recursion_is_an_error():
    assert [c for c, _ in codes(HEAD + "fn f(v: Scalar) -> Scalar = g(v)\nfn g(v: Scalar) -> Scalar = f(v)\n")] == ["E037"]
    assert [c for c, _ in codes(HEAD + "let a = b\nlet b = a + 1\n")] == ["E037"]


def test_image_names_orig_and_self_are_reserved():
    assert codes(HEAD + 'image orig = generate "a dog"\n') == [("E038", 2)]


def test_inner_scopes_shadow_outer_ones():
    c = checked(HEAD + "let o = 3\nfor o in [dog, cat] { size(o) = 0.2 }\n")
    assert c.types[id(c.body[0].body[0].lhs.args[0])] == OBJECT


def test_block_let_is_visible_after_it_only():
    checked(HEAD + "for o in [dog] { let t = size₀(o)\n size(o) = t }\n")
    assert codes(HEAD + "for o in [dog] { size(o) = t\n let t = 1 }\n") == [("E031", 2)]


@pytest.mark.parametrize("inner", ["seed 3", 'object c = "cat"', "fn g(v: Scalar) = v", "use edits"])
def test_definitions_are_not_allowed_in_blocks(inner):
    assert [c for c, _ in codes(HEAD + "for o in [dog] {\n" + inner + "\n}\n")] == ["E015"]


def test_names_are_reported_before_types():
    """A phase barrier: an unknown name stops the type errors of the same program."""
    assert [c for c, _ in codes(HEAD + "size(dog) = centroid(dog)\nsize(dgo) = 1\n")] == ["E031"]


def test_all_errors_of_a_phase_are_reported_sorted():
    assert codes(HEAD + "size(dgo) = 1\nsize(cta) = 1\n") == [("E031", 2), ("E031", 3)]


# ----------------------------------------------------------------------------- functions and calls

def test_macro_cannot_be_used_in_an_expression():
    assert codes(HEAD + "use edits\nsize(dog) = keep(dog)\n") == [("E040", 3)]


def test_value_function_cannot_be_a_statement():
    d = only(HEAD + "centroid(dog)\n")
    assert d.code == "E041" and "Vec2" in d.message


def test_source_on_a_macro():
    assert codes(HEAD + "use edits\nkeep[orig](dog)\n") == [("E042", 3)]


@pytest.mark.parametrize("stmt, low_high", [("minimize size(dog, cat)", "1"), ("minimize mean(box(0, 0, 1))", "4"),
                                            ("minimize mean(softthr())", "1 to 2")])
def test_wrong_number_of_arguments(stmt, low_high):
    d = only(HEAD + stmt + "\n")
    assert d.code == "E043" and f"takes {low_high} argument" in d.message


def test_defaults_fill_missing_arguments():
    checked(HEAD + "fn f(o: Object, k: Scalar = 2) -> Scalar = size(o) * k\nsize(dog) = f(cat)\n")


def test_duplicate_parameter_and_default_order():
    assert [c for c, _ in codes(HEAD + "fn f(a: Scalar, a: Scalar) = a\n")] == ["E044"]
    assert [c for c, _ in codes(HEAD + "fn f(a: Scalar = 1, b: Scalar) = a + b\n")] == ["E045"]


def test_argument_type_names_both_types():
    d = only(HEAD + "size(dog) = size(0.5)\n")
    assert d.code == "E056" and "expects Object, found Scalar" in d.message


def test_overloads_pick_by_argument_types():
    checked(HEAD + "minimize norm(centroid(dog)) + norm(appearance(dog))\n")
    d = only(HEAD + "minimize norm(attn(dog))\n")
    assert d.code == "E057" and len(d.notes) == 2


def test_declared_return_type_is_checked():
    checked(HEAD + "fn f(o: Object) -> Vec2 = centroid(o)\n")
    d = only(HEAD + "fn f(o: Object) -> Scalar = centroid(o)\n")
    assert d.code == "E058" and "Scalar" in d.message and "Vec2" in d.message


def test_return_type_is_inferred_when_not_written():
    c = checked(HEAD + "fn f(o: Object) = centroid(o) * 2\ncentroid(dog) = f(cat)\n")
    assert c.types[id(c.body[0].rhs)] == VEC2


def test_default_must_have_the_parameter_type():
    assert codes(HEAD + "fn f(a: Scalar = (1, 2)) = a\n") == [("E059", 2)]


# ----------------------------------------------------------------------------- expression types

@pytest.mark.parametrize("expr, expected", [
    ("1 + 2", SCALAR), ("(1, 2) - (0, 1)", VEC2), ("attn(dog) + attn(cat)", MAP),
    ("appearance(dog) - appearance(cat)", VECTOR),
    ("2 * 3", SCALAR), ("2 * (1, 0)", VEC2), ("(1, 0) * 2", VEC2), ("(1, 0) / 2", VEC2),
    ("2 * attn(dog)", MAP), ("attn(dog) * 2", MAP), ("attn(dog) / 2", MAP), ("attn(dog) * x()", MAP),
    ("attn(dog) / x()", MAP), ("2 * appearance(dog)", VECTOR), ("appearance(dog) * 2", VECTOR),
    ("appearance(dog) / 2", VECTOR), ("-(1, 2)", VEC2), ("-attn(dog)", MAP), ("(1, 2).y", SCALAR),
])
def test_arithmetic_types(expr, expected):
    c = checked(HEAD + f"let v = {expr}\nminimize size(dog)\n")
    assert c.types[id(c.lets["v"])] == expected


@pytest.mark.parametrize("expr, types", [
    ("1 + (1, 2)", ("Scalar", "Vec2")), ("attn(dog) + 1", ("Map", "Scalar")),
    ("(1, 2) * (1, 2)", ("Vec2", "Vec2")), ("2 / (1, 0)", ("Scalar", "Vec2")),
    ("2 / attn(dog)", ("Scalar", "Map")), ("attn(dog) * (1, 0)", ("Map", "Vec2")),
    ("dog + cat", ("Object", "Object")), ("appearance(dog) * appearance(cat)", ("Vector", "Vector")),
])
def test_operator_mismatch_names_both_types(expr, types):
    d = only(HEAD + f"let v = {expr}\n")
    assert d.code == "E050" and all(t in d.message for t in types)


def test_negation_of_an_object():
    assert codes(HEAD + "let v = -dog\n") == [("E051", 2)]


def test_tuples_are_pairs_of_scalars():
    assert codes(HEAD + "let v = (1, 2, 3)\n") == [("E052", 2)]
    assert codes(HEAD + "let v = (dog, 2)\n") == [("E053", 2)]


def test_attributes_need_a_vec2():
    assert codes(HEAD + "let v = size(dog).x\n") == [("E054", 2)]
    assert codes(HEAD + "let v = centroid(dog).z\n") == [("E054", 2)]


def test_lists_are_homogeneous():
    c = checked(HEAD + "let v = [dog, cat]\nminimize size(dog)\n")
    assert c.types[id(c.lets["v"])] == list_of(OBJECT)
    assert codes(HEAD + "let v = [dog, 1]\n") == [("E055", 2)]
    assert codes(HEAD + "let v = []\n") == [("E055", 2)]


def test_one_mistake_gives_one_error():
    assert len(failure(HEAD + "centroid(dog) = (centroid(dog) + 1) * 2 + (0.1, 0)\n").errors) == 1


# ----------------------------------------------------------------------------- statement types

def test_equality_needs_equal_types():
    d = only(HEAD + "centroid(dog) = size(cat)\n")
    assert d.code == "E060" and "Vec2" in d.message and "Scalar" in d.message
    assert d.span.column == 17 and d.labels[0].span.column == 1
    for same in ("size(dog) = 0.5", "shape(dog) = box(0, 0, 1, 1)", "feat() = feat[orig]()",
                 "appearance(dog) = appearance₀(dog)"):
        checked(HEAD + same + "\n")


def test_equality_of_objects_is_meaningless():
    assert codes(HEAD + "dog = cat\n") == [("E061", 2)]


def test_inequalities_need_scalars():
    checked(HEAD + "size(dog) < size(cat)\ncentroid(dog).x >= 0.5\nsize(dog) ≤ 0.3\n")
    d = only(HEAD + "centroid(dog) < centroid(cat)\n")
    assert d.code == "E062" and ".x" in d.hint


def test_objectives_need_a_scalar():
    checked(HEAD + "maximize size(dog)\n")
    assert codes(HEAD + "minimize attn(dog)\n") == [("E063", 2)]


def test_for_needs_a_list():
    checked(HEAD + "for o in objects() { size(o) = size₀(o) }\n")
    assert codes(HEAD + "for o in dog { size(o) = 0 }\n") == [("E064", 2)]


# ----------------------------------------------------------------------------- modifiers

def test_all_modifiers_in_any_order():
    checked(HEAD + "size(dog) = 0.2 using l2 from 10% to 50% weight 2\n"
                   "size(dog) < 0.2 margin 0.05 weight 3\nmaximize size(cat) from 0% to 100%\n")


@pytest.mark.parametrize("window, code", [("from 10% to 120%", "E070"), ("from 60% to 40%", "E071"),
                                          ("from 50% to 50%", "E071")])
def test_bad_windows(window, code):
    assert codes(HEAD + f"size(dog) = 0.2 {window}\n") == [(code, 2)]


def test_duplicate_modifier_in_a_built_ast():
    """The parser already rejects a repeated modifier (E009); the checker guards ASTs built
    by other means."""
    import attrs

    program = parse(HEAD + "size(dog) = 0.2 weight 1\n", "main.sgl")
    stmt = program.statements[1]
    doubled = attrs.evolve(stmt, modifiers=stmt.modifiers * 2)
    program = attrs.evolve(program, statements=(program.statements[0], doubled))
    with pytest.raises(SGLError) as info:
        check(program)
    assert [d.code for d in info.value.errors] == ["E072"]


def test_using_only_on_equalities_and_margin_only_on_inequalities():
    assert codes(HEAD + "size(dog) < 0.2 using l2\n") == [("E073", 2)]
    assert codes(HEAD + "minimize size(dog) using l1\n") == [("E073", 2)]
    assert codes(HEAD + "size(dog) = 0.2 margin 0.1\n") == [("E074", 2)]


def test_weights_must_be_constant():
    checked(HEAD + "let w = 2 * 3\nsize(dog) = 0.2 weight w / 2\n")
    assert codes(HEAD + "size(dog) = 0.2 weight size(cat)\n") == [("E075", 2)]


def test_weights_may_use_the_numeric_intrinsics_on_constants():
    checked(HEAD + "size(dog) = 0.2 weight 25 * (1 + relu(1 - 0.6)) + abs(-1) + sqrt(4) + norm((3, 4)) + dot((1, 0), (2, 5))\n")
    checked(HEAD + "fn hold(o: Object, f: Scalar) { size(o) = size₀(o) weight 2 * relu(1 - f) }\nhold(dog, 0.6)\n")
    assert codes(HEAD + "size(dog) = 0.2 weight relu(size(cat))\n") == [("E075", 2)]
    assert codes(HEAD + "size(dog) = 0.2 weight mean(shape(cat))\n") == [("E075", 2)]
    d = only(HEAD + "fn hold(o: Object, f: Scalar) { size(o) = size₀(o) weight relu(1 - f) }\nhold(dog, size(cat))\n")
    assert d.code == "E078"


def test_macro_parameter_used_as_weight_needs_a_constant_argument():
    src = HEAD + "fn hold(o: Object, w: Scalar) { size(o) = size₀(o) weight w }\nfn twice(o: Object, k: Scalar) { hold(o, 2 * k) }\n"
    checked(src + "twice(dog, 3)\n")
    d = only(src + "twice(dog, size(cat))\n")
    assert d.code == "E078" and d.span.line == 4


def test_weight_and_margin_are_scalars():
    assert codes(HEAD + "size(dog) = 0.2 weight (1, 2)\n") == [("E076", 2)]
    assert codes(HEAD + "size(dog) < 0.2 margin attn(dog)\n") == [("E076", 2)]


# ----------------------------------------------------------------------------- warnings

def test_constant_target_outside_the_image_is_a_warning():
    c = checked(HEAD + "centroid(dog) = (1.2, 0.5)\ncentroid(cat) = (0.5, 0.5)\n")
    (w,) = c.warnings
    assert w.code == "W001" and w.span.line == 2


def test_a_target_outside_the_image_is_found_through_numeric_intrinsics():
    """The checker folds relu, abs, sqrt, norm and dot of constants as the IR does, so W001
    sees `(relu(2), 0.5)` as (2, 0.5)."""
    c = checked(HEAD + "centroid(dog) = (relu(2), 0.5)\ncentroid(cat) = (sqrt(0.25), abs(-0.5))\n"
                "size(dog) = norm((0.3, 0.4))\n")
    assert [(w.code, w.span.line) for w in c.warnings] == [("W001", 2)]
    c = checked(HEAD + "centroid(dog) = (dot((1, 1), (0.5, 0.75)), 0.5)\n")
    assert [w.code for w in c.warnings] == ["W001"]


# ----------------------------------------------------------------------------- stdlib

def test_core_properties_follow_the_paper():
    """centroid on the raw map, shape soft-thresholded, appearance pooled on a hard mask."""
    fns = checked(HEAD + "minimize size(dog)\n").functions

    def calls(expr):
        out = []
        stack = [expr]
        while stack:
            e = stack.pop()
            if isinstance(e, ast.Call):
                out.append(e.func)
            stack.extend(getattr(e, "args", ()) + getattr(e, "items", ()))
            stack.extend(x for x in (getattr(e, "left", None), getattr(e, "right", None)) if x is not None)
        return set(out)

    assert calls(fns["centroid"][0].body) == {"centroid_of", "attn"}
    assert calls(fns["centroid_of"][0].body) == {"sum", "x", "y"}
    assert calls(fns["shape"][0].body) == {"softthr", "attn"}
    assert calls(fns["size"][0].body) == {"mean", "shape"}
    assert calls(fns["appearance"][0].body) == {"pool", "feat", "hardthr", "attn"}


def test_every_edit_macro_of_the_design_exists():
    fns = checked(HEAD + "use edits\nkeep(dog)\n").functions
    for name in ("keep", "move", "resize", "copy_layout", "copy_appearance", "left_of", "right_of",
                 "above", "below", "inside", "apart", "no_overlap", "in_box", "excite"):
        assert isinstance(fns[name][0].body, tuple), name


def test_checker_does_not_import_torch():
    code = ("import sys; from sgl.syntax.parse import parse; from sgl.check import check; "
            "check(parse('prompt \"a dog\"\\nuse edits\\nkeep(dog)\\n'));"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ----------------------------------------------------------------------------- files on disk

def test_image_files_resolve_against_the_program_folder(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(b"")
    main = tmp_path / "main.sgl"
    src = HEAD + 'image p = load "pics/a.png" caption "a dog"\nshape(dog) = mask("pics/a.png")\n'
    main.write_text(src)
    c = check(parse(src, str(main)), texts={str(main): src})
    assert c.sources["p"].path == str(tmp_path / "pics" / "a.png")
    assert list(c.paths.values()) == [str(tmp_path / "pics" / "a.png")] * 2
    with pytest.raises(SGLError) as info:
        check(parse(src.replace("a.png", "b.png"), "<input>"), base_dir=tmp_path)
    assert [d.code for d in info.value.errors] == ["E039", "E039"]


# ----------------------------------------------------------------------------- robustness

_SOURCES = [p.read_text() for p in sorted((ROOT / "examples").glob("*.sgl"))]
_PIECES = ["dog", "circle", "square", "size", "centroid", "(", ")", ",", "+", "-", "*", "/", "=", "<",
           "0.5", "(0.1, 0)", "₀", ".x", '"a"', "keep", "objects()", "others(circle)", "weight 2",
           "from 10% to 20%", "using l2", "margin 0.1", "attn(circle)", "feat()", "norm", "use edits",
           "[orig]", "[ref]", "for o in [circle] {", "}", "\n", "fn f(o: Object) = ", "let v = "]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_SOURCES),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(["put", "del", "ins"]),
                          st.sampled_from(_PIECES)), min_size=1, max_size=3))
def test_mutated_examples_give_diagnostics_never_exceptions(src, edits):
    tokens = re.findall(r"\w+|[^\w\s]|\s+", src)
    for where, op, piece in edits:
        i = int(where * len(tokens))
        if op == "put":
            tokens[i] = piece
        elif op == "del":
            del tokens[i]
        else:
            tokens.insert(i, piece)
    text = "".join(tokens)
    try:
        program = parse(text, "m.sgl")
    except SGLError:
        return
    try:
        check(program, texts={"m.sgl": text})
    except SGLError as e:
        assert e.errors
        for d in e.diagnostics:
            assert d.span is not None and 0 <= d.span.start <= d.span.end <= len(e.sources[d.span.file])


def test_stdlib_ast_cache_is_written_and_survives_corruption(tmp_path, monkeypatch):
    from sgl.check import imports

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    imports._stdlib_source.cache_clear()
    try:
        text, fresh = imports._stdlib_source("core")
        (cached,) = (tmp_path / "sgl").glob("stdlib-core-*.pickle")
        imports._stdlib_source.cache_clear()
        assert imports._stdlib_source("core")[1] == fresh
        cached.write_bytes(b"not a pickle")
        imports._stdlib_source.cache_clear()
        assert imports._stdlib_source("core")[1] == fresh
    finally:
        imports._stdlib_source.cache_clear()


def test_scheduler_names_are_checked_against_the_runtime_table():
    from sgl.check.settings import SCHEDULERS
    from sgl.runtime.pipelines import SCHEDULERS as RUNTIME

    assert set(SCHEDULERS) == set(RUNTIME)
    assert checked('prompt "a dog"\nscheduler "Euler_a"\n').settings["scheduler"] == "Euler_a"
    d = only('prompt "a dog"\nscheduler "dimm"\n')
    assert d.code == "E025" and "`ddim`" in d.hint


@pytest.mark.parametrize("src, code", [("size(dog) = steps\n", "E026"), ("size(orig) = 0.5\n", "E047"),
                                       ("size(dog) = size(self)\n", "E047")])
def test_keywordish_names_used_as_values(src, code):
    assert codes(HEAD + "steps 10\n" + src) == [(code, 3)]


def test_an_image_passed_as_an_object_hints_at_sources():
    d = only(HEAD + 'image ref = generate "a dog"\nsize(dog) = size(ref)\n')
    assert d.code == "E056" and "size[image](object)" in d.hint


def test_misspelt_function_of_an_unused_module_suggests_the_module():
    d = only(HEAD + "kep(dog)\n")
    assert d.code == "E030" and "`keep`" in d.hint and "use edits" in d.hint


def test_a_stop_word_used_as_an_object_is_a_warning():
    (w,) = checked(HEAD + "size(beach) = 0.2\nsize(a) = 0.2\n").warnings
    assert w.code == "W002" and w.span.line == 3


def test_recursion_through_a_let_and_a_function():
    d = only(HEAD + "let a = f(dog)\nfn f(o: Object) -> Scalar = size(o) * a\n")
    assert d.code == "E037" and "`a` → `f` → `a`" in d.message


def test_example_prompts_use_only_words_the_shapes_model_knows():
    """Examples run on the embedded default model, whose captions have a small vocabulary."""
    from sgl.check.words import words_of
    from sgl.models.shapes.data import VOCABULARY

    for path in sorted((ROOT / "examples").glob("*.sgl")):
        for text in re.findall(r'(?:prompt|generate|caption) "([^"]*)"', path.read_text()):
            assert set(words_of(text)) <= set(VOCABULARY), (path.name, text)


def test_a_source_on_a_call_that_reads_no_run_is_a_warning():
    c = checked(HEAD + "fn area(o: Object) = mean(shape(o))\nfn half() -> Scalar = 0.5\n"
                       "size(dog) = area₀(dog) + half₀()\nshape(dog) = box[orig](0, 0, 1, 1)\n")
    assert [(w.code, w.span.line) for w in c.warnings] == [("W003", 4), ("W003", 5)]


# ----------------------------------------------------------------------------- sources as values

MACRO = "fn take(o: Object, r: Image = orig) { size(o) = size[r](o) }\n"


def test_orig_self_and_images_are_image_arguments():
    assert checked(HEAD + 'image ref = generate "a dog"\n' + MACRO + "take(dog, ref)\ntake(dog, orig)\n"
                   "take(cat, self)\ntake(cat)\n").warnings == ()


@pytest.mark.parametrize("src", ["fn f(o: Object, r: Scalar) { size(o) = size[r](o) }\nf(dog, 1)\n",
                                 "let r = 2\nsize(dog) = size[r](dog)\n",
                                 "for r in [dog, cat] { size(r) = size[r](r) }\n"])
def test_a_variable_naming_a_source_must_hold_an_image(src):
    d = only(HEAD + src)
    assert d.code == "E048" and "not an Image" in d.message


def test_an_object_passed_for_an_image_parameter():
    d = only(HEAD + MACRO + "take(dog, cat)\n")
    assert d.code == "E056" and "expects Image, found Object" in d.message


def test_an_unknown_source_is_still_reported_inside_a_function():
    d = only(HEAD + "fn f(o: Object) { size(o) = size[rr](o) }\nf(dog)\n")
    assert d.code == "E032"


def test_the_readme_program_checks():
    """The language tour in README.md is a program that passes the checker and lowers (its
    image paths are not looked for: no base folder)."""
    from sgl.compiler import check_source

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```sgl\n") + len("```sgl\n")
    program = check_source(text[start:text.index("```", start)], file="<readme>")
    assert len(program.terms) >= 6
