"""Every benchmark runs end to end and prints measured numbers (the numbers themselves are
checked only for sanity: benchmarks, not timed tests)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "sgl/models/shapes/weights/model_index.json"


def _bench(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sgl.cli", "bench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_bench_check_measures_every_file(tmp_path):
    out = tmp_path / "check.json"
    done = _bench("check", "examples/move.sgl", "--repeats", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert list(result["files"]) == ["examples/move.sgl"] and result["files"]["examples/move.sgl"] > 0
    assert "target" in done.stdout


def test_bench_speed_on_a_tiny_architecture(tmp_path):
    out = tmp_path / "speed.json"
    done = _bench("speed", "--arch", "tiny", "--steps", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"plain", "sgl edit", "sgl cached"}
    assert rows["plain"]["ratio"] == 1.0 and all(r["seconds"] > 0 for r in rows.values())


def test_bench_speed_times_the_shapes_model_against_its_targets(tmp_path):
    out = tmp_path / "speed.json"
    done = _bench("speed", "--arch", "shapes", "--steps", "2", "--repeats", "1", "--program", "examples/move.sgl",
                  "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["plain", "move (edit)"]
    assert [r["target_s"] for r in rows.values()] == [3.0, 10.0] and all(r["seconds"] > 0 for r in rows.values())
    assert rows["move (edit)"]["met"] == (rows["move (edit)"]["seconds"] <= 10.0)
    assert "≤ 10 s" in done.stdout


@pytest.mark.skipif(not SHAPES.exists(), reason="the shapes weights are not exported yet")
def test_bench_edits_runs_end_to_end(tmp_path):
    out = tmp_path / "edits.json"
    done = _bench("edits", "--n", "2", "--first", "1", "--steps", "6", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["n"] == 2 and result["first"] == 1
    assert {s["scene"] for s in result["per_scene"]["sgl"]} == {1, 2}
    assert set(result["sgl"]) == set(result["port"]) == set(result["prompt-only"]) and "move" in result["sgl"]
    for method in ("sgl", "port", "prompt-only"):
        for row in result[method].values():
            assert row["n"] == 2 and 0.0 <= row["success"] <= 1.0
        assert len(result["per_scene"][method]) == 2 * len(result[method])
    assert all(f" {m} " in done.stdout for m in ("sgl", "port", "prompt-only"))


@pytest.mark.skipif(not SHAPES.exists(), reason="the shapes weights are not exported yet")
def test_bench_module_option_adds_a_row_on_the_same_originals(tmp_path):
    """--module NAME=PATH: a row whose programs use another module file; a copy of the stdlib's
    edits scores exactly as the sgl row (same originals, same programs), and the table shows it."""
    variant = tmp_path / "edits_copy.sgl"
    variant.write_text((Path(__file__).resolve().parents[1] / "stdlib" / "edits.sgl").read_text(encoding="utf-8"),
                       encoding="utf-8")
    out = tmp_path / "edits.json"
    done = _bench("edits", "--n", "1", "--steps", "4", "--kinds", "move", "--methods", "sgl",
                  "--module", f"copy={variant}", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["rows"] == ["sgl", "copy", "prompt-only"]
    (ours,), (theirs,) = result["per_scene"]["sgl"], result["per_scene"]["copy"]
    assert ours["error"] == theirs["error"] and ours["drift"] == theirs["drift"]
    assert " copy " in done.stdout


@pytest.mark.skipif(not SHAPES.exists(), reason="the shapes weights are not exported yet")
def test_bench_methods_none_runs_only_the_module_rows(tmp_path):
    """`--methods none --module NAME=PATH`: only the variant's row (and prompt-only, which
    samples nothing new), to measure a variant against an earlier run on the same scenes."""
    out = tmp_path / "edits.json"
    done = _bench("edits", "--n", "1", "--steps", "3", "--kinds", "move", "--methods", "none",
                  "--module", f"mine={ROOT / 'stdlib' / 'edits.sgl'}", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["rows"] == ["mine", "prompt-only"]
    done = _bench("edits", "--n", "1", "--methods", "none")
    assert done.returncode != 0 and "none with --module" in done.stderr


def test_bench_module_option_is_checked():
    done = _bench("edits", "--n", "1", "--module", "sgl=stdlib/edits.sgl")
    assert done.returncode != 0 and "a new row name" in done.stderr
    done = _bench("edits", "--n", "1", "--module", "mine=/no/such/file.sgl")
    assert done.returncode != 0 and "no such file" in done.stderr and "Traceback" not in done.stderr


def test_every_row_takes_its_weights_from_its_module(tmp_path):
    """The templates' terms are macro calls: compose from two references gets `copy`'s weights
    from the stdlib in the sgl row and from port_edits.sgl in the port row, read from each
    reference."""
    import shutil

    from sgl.bench.edits import PORT, SGL, fill
    from sgl.compiler import check_file

    shutil.copy(ROOT / "examples/bench/port_edits.sgl", tmp_path / "port_edits.sgl")
    words = dict(a="red circle", b="blue square", a_caption="a red circle", b_caption="a blue square",
                 r1_seed=4, r2_seed=5)
    base = dict(prompt="a red circle and a blue square", seed=1, steps=10)
    found = {}
    for method in (SGL, PORT):
        program = tmp_path / f"{method.name}.sgl"
        program.write_text(fill("compose", {**base, **method.fill()}, **words))
        terms = check_file(program).terms
        found[method.name] = sorted((t.label.split(" › ")[-1].split(" weight")[0], t.weight) for t in terms)
    assert [w for label, w in found["sgl"] if "= appearance[look](o)" in label] == [4.0, 4.0]
    assert [w for label, w in found["port"] if label == "appearance(o) = appearance[source](o)"] == [12.0, 12.0]
    assert any("mass_in" in label for label, _ in found["sgl"])


def test_port_module_checks_and_templates_fill(tmp_path):
    """Every template filled for every row is a program that checks."""
    import shutil

    from sgl.bench.edits import METHODS, bench_dir, template
    from sgl.compiler import check_file

    shutil.copy(bench_dir() / "port_edits.sgl", tmp_path / "port_edits.sgl")
    (tmp_path / "photo.png").write_bytes((ROOT / "sgl/models/shapes/samples.png").read_bytes())
    values = dict(prompt="a red circle and a blue square", seed=1, steps=10, a="red circle", b="blue square",
                  a_shape="circle", dx=0.25, dy=0.0, factor=1.5, ref_prompt="a blue circle and a red square", ref_seed=3,
                  a_caption="a red circle", b_caption="a blue square", r1_seed=4, r2_seed=5, photo="photo.png")
    for method in METHODS.values():
        for path in sorted(bench_dir().glob("*.sgl.in")):
            text = template(path.name[:-len(".sgl.in")]).substitute(values, **method.fill())
            program = tmp_path / f"{method.name}_{path.name[:-3]}"
            program.write_text(text)
            check_file(program)  # raises SGLError with the diagnostics


def test_a_template_must_read_every_word_its_edit_computes(tmp_path, monkeypatch):
    """`fill` refuses a word the template never reads: layout + appearance once checked a
    reference of one caption while its program generated another (the main prompt), and scored 0 %."""
    import sgl.bench.edits as edits

    (tmp_path / "t.sgl.in").write_text('prompt "$prompt"\nimage ref = generate "$prompt" seed $ref_seed\n')
    monkeypatch.setattr(edits, "bench_dir", lambda: tmp_path)
    assert 'seed 3' in edits.fill("t", {"prompt": "a circle"}, ref_seed=3)
    with pytest.raises(ValueError, match="does not read ref_prompt"):
        edits.fill("t", {"prompt": "a circle"}, ref_prompt="a red circle", ref_seed=3)


def test_objects_whose_colour_the_prompt_leaves_open_are_found_by_shape():
    """`locate` on rendered scenes (exact pictures): named colours by colour, open ones by matching
    the remaining blobs to their shape words."""
    from sgl.bench.edits import described, locate, unused_colour
    from sgl.models.shapes.data import render_scene
    from sgl.models.shapes.measure import segment

    checked = 0
    for seed in range(40):
        scene = render_scene(seed, n_objects=2)
        blobs = segment(scene.image)
        if not all(blobs[o.colour].present for o in scene.objects):
            continue  # hidden behind the other object
        a, b = described("layout_appearance", scene)
        assert not a.says_colour and not b.says_colour
        found = locate(blobs, [a, b])
        assert [f.colour for f in found] == [o.colour for o in scene.objects], seed
        a, b = described("appearance_swap", scene)
        assert not a.says_colour and b.says_colour
        assert [f.colour for f in locate(blobs, [a, b])] == [o.colour for o in scene.objects]
        new = unused_colour(blobs, seed)
        assert new not in {o.colour for o in scene.objects}
        assert unused_colour(blobs, seed, also=(new,)) != new
        checked += 1
    assert checked >= 30
    a, _ = described("resize_1.5", render_scene(0, n_objects=2))
    assert not a.says_size and a.says_colour
    a, b = described("move", render_scene(0, n_objects=2))
    assert a.says_colour and a.says_size and b.says_colour


def test_moves_go_where_the_object_fits():
    from sgl.bench.edits import free_offset

    assert free_offset((0.3, 0.5), 0.1, []) == (0.25, 0.0)  # towards the middle
    assert free_offset((0.7, 0.5), 0.1, []) == (-0.25, 0.0)
    assert free_offset((0.3, 0.5), 0.1, [((0.55, 0.5), 0.1)]) == (0.0, -0.25)  # right taken, left outside
    assert free_offset((0.3, 0.3), 0.1, [((0.55, 0.3), 0.1)]) == (0.0, 0.25)
    assert free_offset((0.5, 0.5), 0.3, []) in {(0.25, 0.0), (-0.25, 0.0), (0.0, 0.25), (0.0, -0.25)}  # too big: most room


@pytest.mark.slow
@pytest.mark.skipif(not SHAPES.exists(), reason="the shapes weights are not exported yet")
def test_bench_edits_moves_objects_on_eight_scenes(tmp_path):
    """Larger N (slow): on the shipped weights the sgl row really moves objects (the measured
    success is well above doing nothing), keeping every object present in most scenes."""
    out = tmp_path / "edits.json"
    done = _bench("edits", "--n", "8", "--kinds", "move,keep_others", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for kind in ("move", "keep_others"):
        assert result["prompt-only"][kind]["success"] == 0.0  # the targets are 0.25 away
        assert result["sgl"][kind]["all_present"] >= 0.75
    assert result["sgl"]["move"]["success"] >= 0.5  # measured 7 / 8 (session 5), 6 / 8 (session 7 weights)
    # moved and the other object kept within 0.05: measured 6 / 8 with one thread (5 / 8 on the
    # session-7 weights), 3 / 8 with two (the thread count changes float rounding, and a guided run is chaotic)
    assert result["sgl"]["keep_others"]["success"] >= 0.25
    assert result["sgl"]["keep_others"]["held"] >= 0.5


def test_summary_counts_scenes_whose_untouched_objects_held():
    """`held`: the share of scenes with every untouched object within the drift target; scenes
    without a drift measurement do not count; the table shows it."""
    from sgl.bench.edits import Score, summarise, table

    scores = [Score("keep_others", i, True, 0.01, drift, True, 1.0, "", None)
              for i, drift in enumerate([0.0, 0.02, 0.3, None])]
    summary = summarise(scores)["keep_others"]
    assert summary["held"] == pytest.approx(2 / 3)
    assert summary["drift"] == pytest.approx(0.32 / 3)
    text = table({"sgl": {"keep_others": summary}, "prompt-only": {"keep_others": summary}})
    assert "held" in text.splitlines()[0] and " 67% " in text.splitlines()[1]


def test_a_move_that_keeps_the_others_must_keep_them():
    """keep_others and resize say `keep_others(a)`: a moved object with the other one gone
    elsewhere is a failure; a bare move says nothing about the other object."""
    from sgl.bench.edits import move_succeeded

    assert move_succeeded("move", 0.01, 1.05, True, 0.4)
    assert not move_succeeded("keep_others", 0.01, 1.05, True, 0.4)
    assert not move_succeeded("keep_others", 0.01, 1.05, True, None)
    assert move_succeeded("keep_others", 0.01, 1.05, True, 0.02)
    assert not move_succeeded("resize_1.5", 0.01, 1.0, True, 0.3)
    assert not move_succeeded("keep_others", 0.08, 1.0, True, 0.0)   # not where it was asked to go
    assert not move_succeeded("move", 0.01, 1.3, True, 0.0)          # the wrong size
    assert not move_succeeded("move", 0.01, 1.0, False, 0.0)         # an object is missing


def _fake_run(first: int, n: int, successes: list[bool]) -> dict:
    from sgl.bench.edits import CENTROID_TOL, Score, summarise

    scores = {"sgl": [Score("move", first + i, ok, 0.01, 0.0) for i, ok in enumerate(successes)],
              "prompt-only": [Score("move", first + i, False, 0.25, 0.0) for i in range(n)]}
    return {"n": n, "first": first, "steps": 50, "seconds": 1.0, "overrides": {}, "weights": {},
            "tolerances": {"centroid": CENTROID_TOL},
            **{k: summarise(v) for k, v in scores.items()},
            "per_scene": {k: [{f: x for f, x in s.__dict__.items() if f != "image"} for s in v] for k, v in scores.items()}}


def test_merge_joins_runs_over_disjoint_scenes(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_fake_run(0, 2, [True, False])))
    b.write_text(json.dumps(_fake_run(2, 2, [True, True])))
    out = tmp_path / "all.json"
    done = _bench("edits", "--merge", str(a), str(b), "--json", str(out))
    assert done.returncode == 0, done.stderr
    merged = json.loads(out.read_text())
    assert merged["n"] == 4 and merged["sgl"]["move"]["success"] == 0.75 and merged["sgl"]["move"]["n"] == 4
    assert "75%" in done.stdout
    again = _bench("edits", "--merge", str(a), str(a))
    assert again.returncode != 0 and "share scenes" in again.stderr


def test_success_rates_carry_a_95_percent_interval():
    """Wilson intervals, checked against values worked by hand; the table shows them."""
    from sgl.bench.edits import Score, summarise, table, wilson

    assert wilson(12, 16) == pytest.approx((0.505, 0.898), abs=1e-3)
    lo, hi = wilson(0, 16)
    assert lo == pytest.approx(0, abs=1e-12) and hi == pytest.approx(0.194, abs=1e-3)
    assert wilson(16, 16)[1] == pytest.approx(1) and wilson(16, 16)[0] == pytest.approx(0.806, abs=1e-3)
    scores = [Score("move", i, i < 3, 0.01, 0.0) for i in range(4)]
    summary = summarise(scores)["move"]
    assert summary["success_ci95"] == pytest.approx(list(wilson(3, 4)))
    text = table({"sgl": {"move": summary}, "prompt-only": {"move": summary}})
    assert "95% CI" in text.splitlines()[0] and " 30–95 " in text.splitlines()[1]


def _scripted_bench(pictures):
    """A Bench whose originals are pictures chosen per seed (no model): `pictures[seed]`."""
    from sgl.bench.edits import Bench

    bench = Bench(pipe=None, steps=2, cache=None, methods=())
    bench.original = lambda prompt, seed: pictures[seed]
    return bench


def _picture(scene, objects):
    from PIL import Image

    from sgl.models.shapes.data import PALETTE

    image = np.broadcast_to(np.asarray(scene.background, np.uint8), scene.image.shape).copy()
    for o in objects:
        image[o.mask] = PALETTE[o.colour]
    return Image.fromarray(image)


def test_an_original_that_lacks_an_object_is_redrawn_with_another_seed():
    """The edit is measured on an original that shows what it edits: a missing object makes the
    benchmark resample with seed index + k·REDRAW_SEED_STEP, at most REDRAWS times, and say so."""
    from sgl.bench.edits import REDRAW_SEED_STEP, REDRAWS, Score, summarise, table
    from sgl.models.shapes.data import render_scene

    scene = render_scene(5, n_objects=2)
    a, b = scene.objects
    only_a, both = _picture(scene, [a]), _picture(scene, [a, b])
    step = REDRAW_SEED_STEP
    seed, _, _, found, redrawn = _scripted_bench({3: only_a, 3 + step: both}).valid_original("p", 3, [a, b])
    assert (seed, redrawn) == (3 + step, 1) and [f.colour for f in found] == [a.colour, b.colour]
    seed, _, _, found, redrawn = _scripted_bench({3: both}).valid_original("p", 3, [a, b])
    assert (seed, redrawn) == (3, 0)
    never = {3 + step * k: only_a for k in range(REDRAWS + 1)}
    seed, _, _, found, redrawn = _scripted_bench(never).valid_original("p", 3, [a, b])
    assert redrawn == REDRAWS and found[1] is None
    scores = [Score("move", 0, True, 0.0, 0.0, redrawn=1), Score("move", 1, True, 0.0, 0.0)]
    summary = summarise(scores)["move"]
    assert summary["redrawn"] == 1
    assert "move 1 / 2" in table({"sgl": {"move": summary}, "prompt-only": {"move": summary}})


def test_an_original_that_draws_an_object_twice_is_redrawn():
    """Two green squares for "a green square and …": which one an edit means is ambiguous, so
    the benchmark resamples; when every draw shows a duplicate, it keeps the first complete one."""
    from sgl.bench.edits import REDRAW_SEED_STEP, REDRAWS, _components
    from sgl.models.shapes.measure import object_count
    from sgl.models.shapes.data import render_scene

    scene = render_scene(5, n_objects=2)
    a, b = scene.objects
    taken = a.mask | b.mask  # a second, small copy of a, clear of both objects
    y0, x0 = next((y, x) for y in range(0, 54, 2) for x in range(0, 54, 2) if not taken[y:y + 10, x:x + 10].any())
    mask = np.zeros_like(a.mask)
    mask[y0 + 2:y0 + 8, x0 + 2:x0 + 8] = True
    duplicate = _picture(scene, [a, b, dataclasses.replace(a, mask=mask)])
    both = _picture(scene, [a, b])
    assert object_count(_components(both)) == 2 and object_count(_components(duplicate)) == 3
    step = REDRAW_SEED_STEP
    seed, _, _, found, redrawn = _scripted_bench({3: duplicate, 3 + step: both}).valid_original("p", 3, [a, b])
    assert (seed, redrawn) == (3 + step, 1) and None not in found
    only_a = _picture(scene, [a])
    always = {3: only_a, **{3 + step * k: duplicate for k in range(1, REDRAWS + 1)}}
    seed, image, _, found, _ = _scripted_bench(always).valid_original("p", 3, [a, b])
    assert seed == 3 + step and image is always[3 + step] and None not in found


def test_grid_shows_the_references_between_the_originals_and_the_edits(tmp_path):
    """--grid: one sheet per kind, rows: doing nothing, each reference the edit read, each method."""
    from PIL import Image

    from sgl.bench.edits import Score, _save_grid

    def tile(colour):
        return Image.new("RGB", (8, 8), colour)

    rows = {"sgl": [Score("compose", 0, False, image=tile("red"), references=(tile("green"), tile("blue"))),
                    Score("compose", 1, False, image=None),
                    Score("move", 0, False, image=tile("red"))],
            "prompt-only": [Score("compose", 0, False, image=tile("white")), Score("compose", 1, False, image=tile("white")),
                            Score("move", 0, False, image=tile("white"))]}
    _save_grid(rows, tmp_path)
    compose = np.asarray(Image.open(tmp_path / "compose.png"))
    assert compose.shape == (4 * 8, 2 * 8, 3)
    column = [tuple(compose[8 * r + 4, 4]) for r in range(4)]
    assert column == [(255, 255, 255), (0, 128, 0), (0, 0, 255), (255, 0, 0)]
    assert tuple(compose[8 * 3 + 4, 12]) == (255, 255, 255)  # scene 1 has no edit: left blank
    assert np.asarray(Image.open(tmp_path / "move.png")).shape == (2 * 8, 8, 3)


def test_a_reference_that_ignores_its_colour_word_is_redrawn():
    """valid_reference: the seed of the first draw (seed + k·REDRAW_SEED_STEP) that shows every
    colour asked for; after REDRAWS more, the edit fails in every row and the table says so."""
    from sgl.bench.edits import REDRAW_SEED_STEP, REDRAWS, _no_reference, summarise, table
    from sgl.models.shapes.data import render_scene

    scene = render_scene(5, n_objects=2)
    a, b = scene.objects
    only_a, both = _picture(scene, [a]), _picture(scene, [a, b])
    step = REDRAW_SEED_STEP
    bench = _scripted_bench({1003: only_a, 1003 + step: both})
    assert bench.valid_reference("p", 1003, [a.colour]) == (1003, 0, True)
    assert bench.valid_reference("p", 1003, [a.colour, b.colour]) == (1003 + step, 1, True)
    never = _scripted_bench({1003 + step * k: only_a for k in range(REDRAWS + 1)})
    assert never.valid_reference("p", 1003, [b.colour]) == (1003, REDRAWS, False)
    scores = _no_reference("compose", 3, REDRAWS)
    assert len(scores) == 2 and not any(s.success or s.all_present for s in scores)
    summary = summarise(scores[:1])["compose"]
    assert summary["ref_redrawn"] == 1
    assert "references resampled" in table({"sgl": {"compose": summary}, "prompt-only": {"compose": summary}})


@pytest.mark.skipif(not SHAPES.exists(), reason="the shapes weights are not exported yet")
def test_the_reference_checked_is_the_one_the_program_reads():
    """valid_reference looks at Bench.original(caption, seed); the program's `image ref =
    generate caption seed s` must draw the same picture, or the check would vouch for another."""
    from sgl.bench.edits import SGL, Bench
    from sgl.runtime.cache import RunCache
    from sgl.runtime.pipelines import load_pipeline

    pipe, _ = load_pipeline("shapes")
    bench = Bench(pipe, 4, RunCache(), methods=(SGL,))
    caption = "a red circle and a blue square"
    text = f'prompt "a circle and a square"\nseed 3\nsteps 4\nimage ref = generate "{caption}" seed 1001\n' \
           'object c = "circle"\nappearance(c) = appearance[ref](c)\n'
    result, _ = bench.run_program(text, SGL)
    drawn = np.asarray(result.sources["ref"].convert("RGB"), np.int16)
    checked = np.asarray(bench.original(caption, 1001).convert("RGB"), np.int16)
    assert np.abs(drawn - checked).max() <= 1


def _apart_scene(seeds=range(60)):
    """The first rendered two-object scene whose objects differ in shape and lie apart, so that
    drawn in one colour they are still two blobs."""
    from sgl.models.shapes.data import render_scene

    for seed in seeds:
        scene = render_scene(seed, n_objects=2)
        a, b = scene.objects
        grown = np.zeros_like(a.mask)  # a's mask grown by two pixels must not touch b's
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                grown |= np.roll(np.roll(a.mask, dy, 0), dx, 1)
        if a.shape != b.shape and not (grown & b.mask).any():
            yield scene


def test_objects_drawn_in_one_colour_are_told_apart_by_shape():
    """Colour leakage: the prompt leaves a's colour open and the model draws a in b's colour (or
    both open objects in one colour). With each colour's separate blobs, `locate` matches the two
    blobs of that colour to the two shape words; with only the largest blob per colour (no
    components) the object stays missing, as it did before."""
    import dataclasses
    import itertools

    from sgl.bench.edits import described, locate
    from sgl.models.shapes.measure import segment, segment_components

    for scene in itertools.islice(_apart_scene(), 8):
        a, b = scene.objects
        for kind, colour in (("appearance_swap", b.colour), ("layout_appearance", a.colour)):
            one = np.asarray(_picture(scene, [dataclasses.replace(a, colour=colour), dataclasses.replace(b, colour=colour)]))
            open_a, open_b = described(kind, scene)
            found = locate(segment(one), [open_a, open_b], segment_components(one))
            assert None not in found, (scene.seed, kind)
            for f, o in zip(found, (a, b)):
                assert f.colour == colour and np.hypot(*np.subtract(f.centroid, o.centroid)) < 0.01, (scene.seed, kind)
            assert None in locate(segment(one), [open_a, open_b])


def test_a_swap_on_an_original_with_leaked_colour_is_scored_where_a_was():
    """An appearance swap whose original drew a in b's colour: a must wear the reference's colour
    where it was and b's colour must be gone from a's place, while b — the blob of its colour
    nearest where it was — stays. The original itself (doing nothing) fails."""
    import dataclasses
    from types import SimpleNamespace

    from sgl.bench.edits import SGL, described, unused_colour

    scene = next(_apart_scene())
    a, b = scene.objects
    open_a, named_b = described("appearance_swap", scene)
    leaked = _picture(scene, [dataclasses.replace(a, colour=b.colour), b])
    pictures = {3: leaked}
    bench = _scripted_bench(pictures)
    _, original, orig, found, _ = bench.valid_original("p", 3, [open_a, named_b])
    assert None not in found
    a_seen = dataclasses.replace(open_a, colour=found[0].colour)
    new = unused_colour(orig, 3)
    pictures[3 + 1000] = _picture(scene, [dataclasses.replace(a, colour=new), b])
    base = {"prompt": "p", "seed": 3, "steps": 2, **SGL.fill()}

    def score(edited):
        bench.run_program = lambda text, method: (SimpleNamespace(image=edited, sources={}), 1.0)
        return bench.edit_appearance_swap("appearance_swap", 3, scene, a_seen, named_b, base, original, orig, found, SGL)

    swapped, nothing = score(pictures[3 + 1000])
    assert swapped.success and swapped.drift < 0.01 and not nothing.success
    assert "b's colour" in swapped.note and f"wears {new} where it was (asked {new})" in swapped.note
    unchanged, _ = score(leaked)
    assert not unchanged.success  # a still wears b's colour
    assert f"wears {b.colour} where it was (asked {new})" in unchanged.note
    b_gone, _ = score(_picture(scene, [dataclasses.replace(a, colour=new)]))
    assert not b_gone.success and not b_gone.all_present


def _disc_like(mask, r=4.5):
    """A round blob of radius `r` pixels at `mask`'s centre (how the model may draw a small star
    or square)."""
    ys, xs = np.nonzero(mask)
    cy, cx = round(ys.mean()), round(xs.mean())
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_shapes_are_told_apart_only_when_the_words_clearly_fit():
    """Rendered shapes fit their words by a wide margin and the swapped words do not; a round
    blob beside a circle cannot be told to be the square."""
    from sgl.models.shapes.measure import shapes_told_apart

    for scene in itertools.islice(_apart_scene(), 8):
        a, b = scene.objects
        assert shapes_told_apart([a.mask, b.mask], [a.shape, b.shape]), scene.seed
        assert not shapes_told_apart([a.mask, b.mask], [b.shape, a.shape]), scene.seed
        assert not shapes_told_apart([_disc_like(a.mask), _disc_like(b.mask)], [a.shape, b.shape]), scene.seed
    assert shapes_told_apart([a.mask], [a.shape])  # one blob: nothing to tell apart
    assert not shapes_told_apart([_disc_like(a.mask)], ["star"])  # but it must read as its word


# Two blobs the model drew for "a star and a triangle" (scene 796's original, session 22): a small
# star whose arms the blur filled in, and a triangle with a ragged bottom row. Bounding-box fill
# and solidity called the star the triangle and the triangle the star, with a margin, and a
# correct recolouring scored as a failure. And two stars drawn for "a square and a big star"
# (scene 823's), which that margin also told apart, the larger star as the square.
_BLURRED_STAR = """
.....##.....
....####....
....#####...
...######...
..########..
..#########.
.##########.
############
##########..
..########.."""
_RAGGED_TRIANGLE = """
........##........
........##........
.......####.......
.......####.......
......######......
.....#######......
.....########.....
....##########....
....##########....
...###########....
..#############...
..##############..
.################.
.################.
##################
.##..............#."""


def _drawn(picture: str, top: int, left: int) -> np.ndarray:
    rows = picture.strip("\n").splitlines()
    mask = np.zeros((64, 64), bool)
    for y, row in enumerate(rows):
        for x, c in enumerate(row):
            mask[top + y, left + x] = c == "#"
    return mask


_BIG_STAR = """
............##.......
...........#####.....
..........######.....
..........#######....
.........#########...
.#################...
####################.
.####################
...##################
....#################
......##############.
......##############.
......#############..
......#############..
......##############.
......##############.
.....########.######.
.....######.....#####
.....####........####
....###............##"""
_STAR = """
.........#............
........##............
........###...........
........###...........
.......#####..........
.......#####..........
......#######.........
......#######.........
.##################...
######################
#####################.
#####################.
###################...
.#################....
..###############.....
...#############......
...#############......
...#############......
..###############.....
..###############.....
..###############.....
..#####.....#####.....
.####.........####....
.##.............##...."""


def test_model_drawn_shapes_are_matched_by_their_outlines():
    """A pair is matched to its words by the outlines; it counts as told apart only when each
    blob also reads as its own word: the blurred star alone fits a triangle better, and two
    stars are no square and star, whichever order fits better."""
    from sgl.models.shapes.measure import guess_shape, match_shapes, shapes_told_apart

    star, triangle = _drawn(_BLURRED_STAR, 19, 42), _drawn(_RAGGED_TRIANGLE, 27, 11)
    assert match_shapes([star, triangle], ["triangle", "star"]) == ["star", "triangle"]
    assert guess_shape(triangle) == "triangle" and guess_shape(star) == "triangle"
    assert not shapes_told_apart([star, triangle], ["star", "triangle"])
    assert not shapes_told_apart([star, triangle], ["triangle", "star"])
    big, small = _drawn(_BIG_STAR, 39, 34), _drawn(_STAR, 11, 24)
    assert (guess_shape(big), guess_shape(small)) == ("star", "star")
    assert not shapes_told_apart([big, small], ["square", "star"])
    assert not shapes_told_apart([big, small], ["star", "square"])


def test_rendered_shapes_are_guessed_from_their_outlines():
    from sgl.models.shapes.data import render_scene
    from sgl.models.shapes.measure import guess_shape

    objects = [o for seed in range(30) for o in render_scene(seed).objects]
    assert {o.shape for o in objects} == {"circle", "square", "triangle", "star"}
    assert [guess_shape(o.mask) for o in objects] == [o.shape for o in objects]


def test_an_original_whose_open_shapes_are_not_told_apart_is_redrawn():
    """Layout + appearance leaves both colours open, so the benchmark finds the objects by their
    shapes: an original drawing both as round blobs is drawn again (which blob is which would be
    a guess); when every draw is like that, the first is kept. Named colours need no shapes."""
    import dataclasses

    from sgl.bench.edits import REDRAW_SEED_STEP, REDRAWS, described

    scene = next(s for s in _apart_scene() if "circle" not in (s.objects[0].shape, s.objects[1].shape))
    a, b = scene.objects
    rounded = _picture(scene, [dataclasses.replace(o, mask=_disc_like(o.mask)) for o in (a, b)])
    clear = _picture(scene, [a, b])
    open_a, open_b = described("layout_appearance", scene)
    step = REDRAW_SEED_STEP
    seed, _, _, found, redrawn = _scripted_bench({3: rounded, 3 + step: clear}).valid_original("p", 3, [open_a, open_b])
    assert (seed, redrawn) == (3 + step, 1) and None not in found
    always = {3 + step * k: rounded for k in range(REDRAWS + 1)}
    seed, image, _, found, _ = _scripted_bench(always).valid_original("p", 3, [open_a, open_b])
    assert seed == 3 and image is always[3] and None not in found
    seed, _, _, _, redrawn = _scripted_bench({3: rounded}).valid_original("p", 3, [a, b])
    assert (seed, redrawn) == (3, 0)  # colours named: found by colour, shapes not needed


def _muddy(scene, obj):
    """`scene` with `obj` drawn as the model draws some colour-open objects: its left half in
    its colour, the rest in a brown blend of red and green that no palette colour explains."""
    from PIL import Image

    from sgl.models.shapes.data import PALETTE

    image = np.array(_picture(scene, scene.objects))
    ys, xs = np.nonzero(obj.mask)
    blend = (np.asarray(PALETTE["red"], float) + np.asarray(PALETTE["green"], float)) / 2
    image[ys[xs > np.percentile(xs, 35)], xs[xs > np.percentile(xs, 35)]] = blend.astype(np.uint8)
    return Image.fromarray(image)


def test_rendered_scenes_are_read_and_muddy_objects_are_not():
    """The segmenter explains every interior pixel of a rendered object by a palette colour; an
    object mostly in a blend of two colours is over the limit."""
    from sgl.models.shapes.data import render_scene
    from sgl.models.shapes.measure import UNREAD_LIMIT, unread_share

    for seed in range(40):
        assert unread_share(render_scene(seed, n_objects=2).image) <= 0.02, seed
    scene = next(_apart_scene())
    big = max(scene.objects, key=lambda o: o.mask.sum())
    assert unread_share(np.asarray(_muddy(scene, big))) > UNREAD_LIMIT


def test_an_original_with_an_object_the_segmenter_cannot_read_is_redrawn():
    """A muddy object is found as a fragment (a wrong centroid and area): such an original is
    drawn again, like one with an object twice."""
    from sgl.bench.edits import REDRAW_SEED_STEP

    scene = next(_apart_scene())
    a, b = scene.objects
    muddy, clear = _muddy(scene, max(scene.objects, key=lambda o: o.mask.sum())), _picture(scene, [a, b])
    step = REDRAW_SEED_STEP
    seed, _, _, found, redrawn = _scripted_bench({3: muddy, 3 + step: clear}).valid_original("p", 3, [a, b])
    assert (seed, redrawn) == (3 + step, 1) and [f.colour for f in found] == [a.colour, b.colour]


def test_touching_masks():
    from sgl.bench.edits import touching

    m1 = np.zeros((8, 8), bool)
    m1[2:4, 2:4] = True
    for y, x, touch in ((4, 4, True), (3, 4, True), (3, 5, False), (5, 5, False), (2, 6, False), (0, 0, False), (1, 1, True)):
        m2 = np.zeros_like(m1)
        m2[y, x] = True
        assert touching(m1, m2) is touch and touching(m2, m1) is touch, (y, x)


def test_a_compose_reference_is_redrawn_until_its_object_lies_clear_of_the_other():
    """Compose asks a where r1 drew it and b where r2 drew it: r2 is drawn again (up to
    LAYOUT_TRIES seeds) until b does not touch r1's a; when none is clear, the first draw that
    shows b is kept. Without `clear_of` the colour check alone decides, as before."""
    import dataclasses

    from sgl.bench.edits import LAYOUT_TRIES, REDRAW_SEED_STEP

    scene = next(_apart_scene())
    a, b = scene.objects
    on_a = _picture(scene, [dataclasses.replace(b, mask=a.mask)])  # b drawn where a is
    apart = _picture(scene, [b])
    step = REDRAW_SEED_STEP
    bench = _scripted_bench({3003: on_a, 3003 + step: on_a, 3003 + 2 * step: apart})
    assert bench.valid_reference("p", 3003, [b.colour], clear_of=a.mask) == (3003 + 2 * step, 2, True)
    assert bench.valid_reference("p", 3003, [b.colour]) == (3003, 0, True)
    crowded = _scripted_bench({3003 + step * k: on_a for k in range(LAYOUT_TRIES)})
    assert crowded.valid_reference("p", 3003, [b.colour], clear_of=a.mask) == (3003, 0, True)


def test_an_original_showing_every_colour_fails_its_recolouring_instead_of_crashing():
    """A smeared original can show every palette colour (one rainbow blob): a swap or layout +
    appearance then has no new colour to ask for, and fails in every row with a note."""
    from types import SimpleNamespace

    from sgl.bench.edits import SGL, COLOURS, described, unused_colour

    every = {c: SimpleNamespace(present=True) for c in COLOURS}
    assert unused_colour(every, 3) is None
    all_but_red = {**every, "red": SimpleNamespace(present=False)}
    assert unused_colour(all_but_red, 3) == "red" and unused_colour(all_but_red, 3, also=("red",)) is None
    scene = next(_apart_scene())
    bench = _scripted_bench({})
    for kind in ("appearance_swap", "layout_appearance"):
        a, b = described(kind, scene)
        run = getattr(bench, f"edit_{kind}")
        scores = run(kind, 3, scene, a, b, {}, None, every, [None, None], SGL)
        assert len(scores) == 2 and not any(s.success for s in scores)
        assert "too many colours" in scores[0].note
