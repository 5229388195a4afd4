"""End to end on the tiny random pipeline: compile → run → Result → files on disk."""

from __future__ import annotations

import json

import pytest

import sgl
import torch

PROGRAM = '''
prompt "a photo of a red dog and a blue cat on the beach"
seed 3
steps 3
cfg 5
use edits
centroid(dog) = centroid₀(dog) + (0.2, 0)
for o in others(dog) { keep(o) }
image ref = generate "a blue car in the snow" seed 2
appearance(cat) = appearance[ref](car) weight 2 from 0% to 50%
'''


@pytest.fixture(scope="module")
def result(tiny_sd):
    return sgl.compile(PROGRAM).run(pipe=tiny_sd, progress=False)


def test_run_produces_every_image_and_a_trace(result):
    assert result.image.size == result.original.size == (32, 32)
    assert set(result.sources) == {"ref"}
    assert len(result.trace) == 3
    guided = [row for row in result.trace if row["guided"]]
    assert guided, "no step was guided"
    names = {t["name"] for t in result.terms}
    for row in guided:
        assert set(row["terms"]) <= names
        assert row["grad_norm"] is not None and row["grad_norm"] > 0


def test_window_switches_the_appearance_term_off(result):
    label = "appearance(cat) = appearance[ref](car) weight 2 from 0% to 50%"
    active = [label in row["terms"] for row in result.trace]
    assert active == [True, True, False]


def test_guidance_changes_the_image_and_strength_zero_does_not(tiny_sd, result):
    import numpy as np

    edited = np.asarray(result.image, dtype=np.float32)
    original = np.asarray(result.original, dtype=np.float32)
    assert np.abs(edited - original).max() > 0
    plain = sgl.compile(PROGRAM, strength=0).run(pipe=tiny_sd, progress=False)
    assert np.array_equal(np.asarray(plain.image), np.asarray(plain.original))


def test_constraints_that_hold_from_the_start_leave_the_image_as_it_was(tiny_sd):
    """The edited and the original run share their first latents: `keep(dog)` holds there up to
    float noise. With `gradient "unit"`, a noise-level gradient scaled to a full step moved
    objects; now every such step is met (no guidance), and the run stays the original. (`keep`'s
    shape term does act: a soft map is asked to become its own hard silhouette.)"""
    import numpy as np

    text = ('prompt "a photo of a red dog and a blue cat on the beach"\nseed 3\nsteps 3\ncfg 5\n'
            'gradient "unit"\nstrength 2\nrecurrence 1\nuse edits\ncentroid(dog) = centroid₀(dog)\n'
            'size(dog) = size₀(dog)\nappearance(dog) = appearance₀(dog)\nmass_in(dog, box(0, 0, 0.5, 1)) > mass_in₀(dog, box(0, 0, 0.5, 1))\n')
    kept = sgl.compile(text).run(pipe=tiny_sd, progress=False)
    assert all(row["met"] and row["guided"] for row in kept.trace)
    edited, original = (np.asarray(im, dtype=np.float32) for im in (kept.image, kept.original))
    assert np.abs(edited - original).max() <= 1.0  # a rounding step of the 8-bit image at most
    moved = sgl.compile(text + "move(cat, (0.2, 0))\n").run(pipe=tiny_sd, progress=False)
    assert not any(row["met"] for row in moved.trace)


def test_warmup_ramps_the_strength_over_the_first_steps(tiny_sd, monkeypatch):
    """`warmup 0.5` of 4 steps: the guided steps use v·¼, v·½, then v; each step's guidance is
    the full one scaled by that share (its gradient does not depend on v)."""
    from sgl.runtime import sampler
    from sgl.runtime.sampler import StepInfo, warmup_factor

    assert [warmup_factor(StepInfo(i, 4, 0.0, 1.0), 0.5) for i in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert [warmup_factor(StepInfo(i, 10, 0.0, 1.0), 0.2) for i in range(3)] == [0.5, 1.0, 1.0]
    assert warmup_factor(StepInfo(0, 10, 0.0, 1.0), 0.0) == 1.0
    added = {}
    real = sampler.to_model_output

    def recording(delta, prediction_type, sigma):
        added.setdefault(round(sigma, 6), []).append(delta.detach().clone())
        return real(delta, prediction_type, sigma)

    monkeypatch.setattr(sampler, "to_model_output", recording)
    text = ('prompt "a red dog and a blue cat"\nseed 3\nsteps 4\ngradient "unit"\nstrength 2\n'
            'recurrence 1\nuse edits\nmove(dog, (0.2, 0))\n')
    sgl.compile(text, warmup=0).run(pipe=tiny_sd, progress=False)
    full = [v[0] for v in added.values()]
    added.clear()
    ramped_result = sgl.compile(text, warmup=1).run(pipe=tiny_sd, progress=False)
    ramped = [v[0] for v in added.values()]
    assert len(full) == len(ramped) == 4
    # the first step is the same in both runs (same latents): its guidance is a quarter as large
    assert torch.allclose(ramped[0], full[0] / 4, rtol=1e-4, atol=1e-6)
    assert [round(float(g.pow(2).mean().sqrt() / (2 * s)), 3) for g, s in zip(ramped, added)] == [0.25, 0.5, 0.75, 1.0]
    assert ramped_result.image is not None


def test_save_writes_all_outputs(result, tmp_path):
    out = result.save(tmp_path / "run")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["edited.png", "original.png", "ref.png", "report.html", "trace.json"]
    trace = json.loads((out / "trace.json").read_text())
    assert len(trace["steps"]) == 3 and trace["terms"]
    html = (out / "report.html").read_text()
    assert "centroid(dog)" in html and "data:image/png;base64" in html


def test_cache_reuses_the_original_run(tiny_sd):
    from sgl.runtime.cache import RunCache

    cache = RunCache()
    base = 'prompt "a red dog and a blue cat"\nsteps 2\nuse edits\n'
    first = sgl.compile(base + "move(dog, (0.1, 0))").run(pipe=tiny_sd, progress=False, cache=cache)
    second = sgl.compile(base + "centroid(cat).x < 0.4").run(pipe=tiny_sd, progress=False, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    import numpy as np

    assert np.array_equal(np.asarray(first.original), np.asarray(second.original))


def test_cache_serves_a_reference_from_an_earlier_original_of_its_prompt(tiny_sd):
    """An unguided run is the same picture under any name: one program's `orig` of a prompt and
    seed is another program's `image ref = generate` of them, sampled once."""
    from sgl.runtime.cache import RunCache
    import numpy as np

    cache = RunCache()
    first = sgl.compile('prompt "a red dog and a blue cat"\nseed 7\nsteps 2\n').run(
        pipe=tiny_sd, progress=False, cache=cache)
    second = sgl.compile('prompt "a dog and a cat"\nseed 1\nsteps 2\n'
                         'image ref = generate "a red dog and a blue cat" seed 7\n'
                         'appearance(dog) = appearance[ref](dog)\n').run(pipe=tiny_sd, progress=False, cache=cache)
    assert (cache.hits, cache.misses) == (1, 2)   # `ref` hit; the second `orig` is a new prompt
    assert np.array_equal(np.asarray(first.original), np.asarray(second.sources["ref"]))
    assert any(row["guided"] for row in second.trace)


def test_start_edits_a_loaded_image_from_its_inverted_noise(tiny_sd, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    source = ('prompt "a red dog and a blue cat"\nsteps 3\n'
              'image photo = load "photo.png" caption "a red dog and a blue cat"\nstart "photo"\n'
              'centroid(dog) = centroid[photo](dog) + (0.1, 0)\nshape(cat) = silhouette₀(cat)\n')
    (tmp_path / "edit.sgl").write_text(source)
    result = sgl.compile(tmp_path / "edit.sgl").run(pipe=tiny_sd, progress=False)
    # `orig` is the photo itself (as encoded), not a new sample from the seed
    assert result.original.size == (32, 32)
    assert np.array_equal(np.asarray(result.original), np.asarray(result.sources["photo"]))
    assert any(row["guided"] for row in result.trace)


def test_sgl_run_writes_every_output_and_keeps_stdout_clean_on_error(tiny_sd_dir, tmp_path):
    import subprocess
    import sys

    program = tmp_path / "move.sgl"
    program.write_text('prompt "a red dog and a blue cat"\nsteps 2\nuse edits\nmove(dog, (0.2, 0))\n'
                       'image ref = generate "a blue car" seed 1\nappearance(cat) = appearance[ref](car)\n')
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "sgl.cli"]
    done = subprocess.run([*cli, "run", str(program), "--model", str(tiny_sd_dir), "-o", str(out), "--quiet",
                           "--set", "cfg=3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["edited.png", "original.png", "ref.png", "report.html",
                                                      "trace.json"]
    trace = json.loads((out / "trace.json").read_text())
    assert trace["settings"]["cfg"] == 3 and len(trace["steps"]) == 2

    program.write_text('prompt "a red dog"\nsteps 2\nuse edits\nmove(dgo, (0.2, 0))\n')
    failed = subprocess.run([*cli, "run", str(program), "--model", str(tiny_sd_dir), "-o", str(out)],
                            capture_output=True, text=True)
    assert failed.returncode == 1 and failed.stdout == "" and "E031" in failed.stderr
    assert "Traceback" not in failed.stderr
    # the earlier outputs are still there
    assert (out / "edited.png").exists() and json.loads((out / "trace.json").read_text())["steps"]

    program.write_text('prompt "a red dog"\nsteps 2\nuse edits\nmove(dog, (0.2, 0))\n')
    missing = subprocess.run([*cli, "run", str(program), "--model", str(tmp_path / "nope")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "E220" in missing.stderr and "Traceback" not in missing.stderr


def test_guidance_defaults_come_from_the_model(tiny_sd, tiny_sd_dir, tmp_path):
    """A pipeline object of the SD family: the public ports' raw v = 1000; a folder's sgl.json
    overrides both strength and gradient mode; a program's settings override the model."""
    import shutil

    from sgl.runtime.pipelines import load_pipeline

    run = sgl.compile(PROGRAM)
    plain = run.run(pipe=tiny_sd, progress=False).settings
    assert (plain["strength"], plain["gradient"], plain["recurrence"], plain["warmup"]) == (1000.0, "raw", 1, 0.0)
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd_dir, folder)
    assert (plain["recurrence_until"], plain["recurrence_above"], plain["recurrence_early"]) == (1.0, 0.0, 0.0)
    (folder / "sgl.json").write_text(json.dumps({"strength": 0.25, "gradient": "unit", "recurrence": 2, "warmup": 0.3,
                                                 "recurrence_until": 0.5, "recurrence_above": 0.05,
                                                 "recurrence_early": 0.25}))
    pipe, _ = load_pipeline(str(folder))
    settings = run.run(pipe=pipe, progress=False).settings  # the loaded object remembers its folder
    tuned = ("strength", "gradient", "recurrence", "warmup", "recurrence_until", "recurrence_above", "recurrence_early")
    assert tuple(settings[k] for k in tuned) == (0.25, "unit", 2, 0.3, 0.5, 0.05, 0.25)
    mine = sgl.compile(PROGRAM + 'gradient "raw"\nstrength 7\nrecurrence 1\nwarmup 0\n')
    mine = mine.run(pipe=pipe, progress=False).settings
    assert (mine["strength"], mine["gradient"], mine["recurrence"], mine["warmup"]) == (7, "raw", 1, 0)


def test_an_error_about_the_programs_own_prompt_points_at_it(tiny_sd):
    """A word past the text encoder's token limit is found at run time, by the tokenizer; the
    diagnostic points at the `prompt` line."""
    long_prompt = "a photo of " + "a red dog and " * 20 + "a cat"
    program = sgl.compile(f'prompt "{long_prompt}"\nsteps 2\ncentroid(cat) = (0.7, 0.5)\n')
    with pytest.raises(sgl.SGLError) as err:
        program.run(pipe=tiny_sd, progress=False)
    diagnostic = err.value.diagnostics[0]
    assert diagnostic.code == "E202" and diagnostic.span is not None and diagnostic.span.line == 1


APPEARANCE_ONLY = '''
prompt "a photo of a red dog and a blue cat on the beach"
seed 3
steps 2
{features}image ref = generate "a blue car in the snow" seed 2
appearance(cat) = appearance[ref](car)
'''


def test_features_setting_chooses_the_layer_feat_reads(tiny_sd):
    """`features "…"` overrides the profile's feature layer (tiny_sd's rule gives up_blocks.0):
    the appearance energy is read from other activations; an unknown module is E212."""
    from sgl.runtime.cache import RunCache

    cache = RunCache()
    label = "appearance(cat) = appearance[ref](car)"

    def energy(features):
        text = APPEARANCE_ONLY.format(features=features)
        result = sgl.compile(text).run(pipe=tiny_sd, progress=False, cache=cache)
        return result.trace[0]["terms"][label]

    default, explicit, other = energy(""), energy('features "up_blocks.0"\n'), energy('features "up_blocks.1"\n')
    # the same layer read in another batch composition: equal up to fp32 summation order (the
    # CPU's kernels choose it); another layer gives another energy
    assert default == pytest.approx(explicit, rel=1e-5) and other != pytest.approx(default, rel=1e-3)
    with pytest.raises(sgl.SGLError) as err:
        energy('features "up_blocks.9"\n')
    diagnostic = err.value.diagnostics[0]
    assert diagnostic.code == "E212" and "up_blocks.9" in str(err.value)
    assert diagnostic.span is not None and diagnostic.span.line == 5  # the `features` line


def test_a_layer_the_model_lacks_is_reported_at_the_setting_unless_overridden(tiny_sd):
    """Settings whose values only the model can judge (`layers`, `features`) are checked at run
    time; the diagnostic points at the program's line, or nowhere when the value came from an
    override (`--set`, `sgl.compile(…, layers=…)`), which has no line."""
    text = APPEARANCE_ONLY.format(features='layers "up_blocks.7.*"\n')
    with pytest.raises(sgl.SGLError) as err:
        sgl.compile(text).run(pipe=tiny_sd, progress=False)
    diagnostic = err.value.diagnostics[0]
    assert diagnostic.code == "E211" and diagnostic.span is not None and diagnostic.span.line == 5
    assert text in err.value.sources.values()  # so that the line can be shown
    with pytest.raises(sgl.SGLError) as err:
        sgl.compile(text, layers="up_blocks.8.*").run(pipe=tiny_sd, progress=False)
    assert err.value.diagnostics[0].code == "E211" and err.value.diagnostics[0].span is None


def test_a_pixel_term_in_a_window_decodes_the_edit_only_in_that_window(tiny_sd, monkeypatch):
    """A program whose only `pixels()` term runs from 0% to 50% decodes the guided x̂₀ (with
    its gradient) at the first half of the steps and not after, while its attention terms guide
    every step; the trace shows the pixel term only where it is active."""
    from sgl.runtime import sampler as sampler_module

    graded = []
    real_decode = sampler_module.decode_pixels

    def counting_decode(vae, latents):
        if latents.requires_grad:
            graded.append(latents.shape)
        return real_decode(vae, latents)

    monkeypatch.setattr(sampler_module, "decode_pixels", counting_decode)
    text = ('prompt "a photo of a red dog and a blue cat on the beach"\nseed 3\nsteps 4\ncfg 5\n'
            "centroid(dog) = centroid₀(dog) + (0.2, 0)\n"
            "rgb(dog) = rgb₀(dog) weight 2 from 0% to 50%\n")
    result = sgl.compile(text).run(pipe=tiny_sd, progress=False, recurrence=1)
    assert len(graded) == 2
    pixel_term = "rgb(dog) = rgb₀(dog) weight 2 from 0% to 50%"
    assert [pixel_term in row["terms"] for row in result.trace] == [True, True, False, False]
    assert all(row["guided"] for row in result.trace)
