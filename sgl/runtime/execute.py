"""Running a compiled program: IR requirements → sampler requests, IR terms → the energy
callback, sampler output → a `Result`.

This is the only place where the compiler's output meets the model. Attention is recorded
per *word occurrence* (a word split into sub-tokens sums its columns; a word the prompt uses
twice is recorded at each place); an object of several words reads the mean of the maps of
its own occurrences (`tokens.occurrence_keys`), so one recording serves every phrase, and a
cached `orig` run recorded for all prompt words serves any later program on the same prompt.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Hashable, Iterable, Mapping

import torch

from sgl.diagnostics import SGLError
from sgl.runtime.cache import RunCache
from sgl.runtime.evaluate import EnergyCallback, Evaluator
from sgl.runtime.hooks import Recorded
from sgl.runtime.invert import invert
from sgl.runtime.pipelines import SHAPES_DIR, load_pipeline, make_scheduler
from sgl.runtime.profiles import resolve_feature_layers
from sgl.runtime.result import Result
from sgl.check.settings import GRADIENTS
from sgl.runtime.sampler import SELF, SourceSpec, in_windows, sample
from sgl.runtime.tokens import Nth, occurrence_keys, word_keys

REPORT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # steps whose attention maps the report shows

# Settings a model recommends when a program sets none: its folder's `sgl.json`
# ({"strength": v, "gradient": "raw"|"unit", "cfg": s, "recurrence": n, "recurrence_until": u,
# "recurrence_above": a, "recurrence_early": e, "warmup": w}; the embedded `shapes` model ships one, tuned on `sgl bench
# edits`), else its family's. Stable Diffusion: the public ports use about 1000 with the raw gradient
# (eps += 1000·∇g), diffusers' cfg 7.5, no recurrence, no warmup.
SD_DEFAULTS = {"strength": 1000.0, "gradient": "raw", "cfg": 7.5, "recurrence": 1, "recurrence_until": 1.0,
               "recurrence_above": 0.0, "recurrence_early": 0.0, "warmup": 0.0}
# the settings a model may recommend
TUNED = ("strength", "gradient", "cfg", "recurrence", "recurrence_until", "recurrence_above", "recurrence_early",
         "warmup")
FAMILY_DEFAULTS = {"sd": SD_DEFAULTS, "sdxl": SD_DEFAULTS}
OTHER_DEFAULTS = {**SD_DEFAULTS, "strength": 1.0}


def model_defaults(info) -> dict:
    """The strength, gradient mode, cfg, recurrence (and where it applies) and warmup a
    model recommends: its folder's sgl.json, else its family's."""
    out = dict(FAMILY_DEFAULTS.get(info.family, OTHER_DEFAULTS))
    folder = SHAPES_DIR if info.origin == "shapes" else Path(info.origin)
    config = folder / "sgl.json"
    if config.is_file():
        try:
            saved = json.loads(config.read_text())
            if "strength" in saved:
                out["strength"] = float(saved["strength"])
            if saved.get("gradient") in GRADIENTS:
                out["gradient"] = saved["gradient"]
            if "cfg" in saved:
                out["cfg"] = float(saved["cfg"])
            if "recurrence" in saved:
                out["recurrence"] = max(1, int(saved["recurrence"]))
            for share in ("warmup", "recurrence_until", "recurrence_above", "recurrence_early"):
                if share in saved:
                    out[share] = min(1.0, max(0.0, float(saved[share])))
        except (ValueError, TypeError, OSError, AttributeError):
            pass
    return out


def resolution_hw(value, default: tuple[int, int]) -> tuple[int, int]:
    """(height, width) from a `resolution` setting: None, N, or (W, H)."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return int(value), int(value)
    width, height = value
    return int(height), int(width)


def word_requests(keys: Iterable[tuple[str, ...]], prompt: str) -> dict[tuple, "Nth | str"]:
    """Token groups to record for objects `keys` in a run of `prompt`: each word occurrence an
    object reads there (`occurrence_keys`). A word the prompt lacks is requested as itself, so
    that the sampler reports it (E201)."""
    every = word_keys(prompt)
    out: dict[tuple, Nth | str] = {}
    for key in keys:
        found = occurrence_keys(prompt, tuple(key))
        out.update({(w,): w for w in key} if found is None else {k: every[k] for k in found})
    return out


def with_phrases(rec: Recorded, keys: Iterable[tuple[str, ...]], prompt: str) -> Recorded:
    """`rec` (recorded per word occurrence) plus a map for every object key: the mean of the
    maps of the word occurrences it reads in `prompt`."""
    attn = dict(rec.attn)
    for key in keys:
        found = occurrence_keys(prompt, tuple(key))
        if key in attn or found is None or not all(k in attn for k in found):
            continue
        attn[key] = torch.stack([attn[k] for k in found]).mean(0)
    return Recorded(attn, rec.feats)


def _written_at(program, settings: Mapping, name: str):
    """Where the program wrote the setting `name`, when the value in force is that one (not an
    override from the command line or `sgl.compile(…, name=…)`)."""
    energy = program.energy
    if name in energy.setting_spans and energy.settings.get(name) == settings.get(name):
        return energy.setting_spans[name]
    return None


def with_feature_layer(pipe, info, name: str | None, span=None):
    """`info` with its profile's feature layer (what `feat()` reads) set by a program's
    `features "…"` setting; an unknown module name is E212 (at `span`, the setting's line)."""
    if not name:
        return info
    (layer,) = resolve_feature_layers(pipe.unet, [name], info.profile, span=span)
    return dataclasses.replace(info, profile=dataclasses.replace(info.profile, feature_layer=layer))


def _cache_key(pipe, info, settings: Mapping, prompt: str, seed: int) -> Hashable:
    """What determines a source run. Not the name the program gives it: an unguided run of a
    prompt and seed is the same picture whether it is one program's `orig` or another's `ref`.
    Pipeline objects are told apart by identity (two objects may hold different weights);
    folders and `shapes` by their path."""
    model = info.origin if info.origin != "<pipeline object>" else ("object", id(pipe.unet))
    return (model, prompt, settings["negative"], int(seed), int(settings["steps"]),
            float(settings["cfg"]), repr(settings["resolution"]), settings["scheduler"], settings["layers"],
            info.profile.feature_layer)


def execute(program, pipe=None, *, device=None, dtype=None, progress: bool = True,
            cache: RunCache | None = None) -> Result:
    """Sample `program` (an `sgl.Program`): the original, every reference and the edit."""
    energy = program.energy
    pipe, info = load_pipeline(pipe if pipe is not None else program.settings["model"], device, dtype)
    settings = dict(program.settings)
    recommended = model_defaults(info)
    for key in TUNED:
        if settings.get(key) is None:
            settings[key] = recommended[key]
    info = with_feature_layer(pipe, info, settings.get("features"), _written_at(program, settings, "features"))
    height, width = resolution_hw(settings["resolution"], info.default_resolution)
    steps, seed = int(settings["steps"]), int(settings["seed"])
    scheduler = make_scheduler(pipe, settings["scheduler"])
    needs = energy.requirements.sources
    grid = info.latent_size(height, width)

    # every source and the guided run record per word; phrases are rebuilt in the callback
    keys = {name: set(n.objects) for name, n in needs.items()}
    start = settings.get("start")
    trajectories = {}
    sources: list[SourceSpec] = []
    for name, info_src in energy.sources.items():
        if name == SELF or (start is not None and name == "orig"):
            continue  # with `start`, `orig` is the started-from image itself (added below)
        need = needs.get(name)
        when = in_windows(need.windows if need else ())
        features = tuple(sorted(need.features)) if need else ()
        if info_src.kind == "load":
            tokens = word_requests(need.objects, info_src.prompt) if need else {}
            trajectory = invert(pipe, info_src.path, info_src.prompt, steps=steps, height=height, width=width,
                                scheduler=scheduler, info=info, span=info_src.span, progress=False)
            trajectories[name] = trajectory
            sources.append(SourceSpec(name, trajectory=trajectory, tokens=tokens, features=features,
                                      when=when, span=info_src.span))
            continue
        prompt = settings["prompt"] if name == "orig" else info_src.prompt
        tokens = word_requests(need.objects, prompt) if need else {}
        src_seed = seed if info_src.seed is None else int(info_src.seed)
        cached = None
        if cache is not None:
            # record every prompt word and the default features at every step, so that the
            # cached run serves any later program on the same prompt and seed
            tokens = word_keys(prompt)
            features, when = tuple(sorted({*features, "default"})), None
            cached = cache.get(_cache_key(pipe, info, settings, prompt, src_seed))
        sources.append(SourceSpec(name, prompt=prompt, seed=src_seed, tokens=tokens, features=features,
                                  when=when, cached=cached, span=info_src.span))

    start_latents = None
    if start is not None:
        # editing a real image: start from its inverted noise; `orig` reads the image itself
        trajectory = trajectories[start]
        start_latents = trajectory.latents[0]
        need = needs.get("orig")
        sources.append(SourceSpec("orig", trajectory=trajectory,
                                  tokens=word_requests(need.objects, trajectory.caption) if need else {},
                                  features=tuple(sorted(need.features)) if need else (),
                                  when=in_windows(need.windows if need else ())))

    evaluator = Evaluator(energy.terms, grid=grid, device=pipe.unet.device)
    callback = EnergyCallback(evaluator, {"default": info.profile.feature_layer})
    all_keys = {k for ks in keys.values() for k in ks}

    prompts = {SELF: settings["prompt"], **{spec.name: spec.prompt if spec.trajectory is None else spec.trajectory.caption
                                            for spec in sources}}

    def energy_fn(step, recorded):
        return callback(step, {name: with_phrases(rec, keys.get(name, all_keys), prompts[name])
                               for name, rec in recorded.items()})

    self_need = needs.get(SELF)
    keep_steps = sorted({min(steps - 1, int(f * steps)) for f in REPORT_FRACTIONS}) if steps else []
    result = sample(
        pipe, prompt=settings["prompt"], negative=settings["negative"], seed=seed, steps=steps,
        cfg=float(settings["cfg"]), height=height, width=width,
        strength=float(settings["strength"]) if energy.terms else 0.0,
        gradient=str(settings["gradient"]).lower(), recurrence=settings["recurrence"],
        recurrence_until=float(settings["recurrence_until"]),
        recurrence_above=float(settings["recurrence_above"]),
        recurrence_early=float(settings["recurrence_early"]),
        warmup=float(settings["warmup"]),
        energy=energy_fn if energy.terms else None,
        guide_when=lambda step: any(evaluator.active(step.index, step.num_steps)),
        tokens=word_requests(self_need.objects, settings["prompt"]) if self_need else {},
        features=tuple(sorted(self_need.features)) if self_need else (),
        computed_when={f: in_windows(w) for f, w in self_need.feature_windows} if self_need else None,
        sources=sources, scheduler=scheduler, attn_layers=settings["layers"],
        layer_span=_written_at(program, settings, "layers"), progress=progress,
        keep_steps=keep_steps if energy.terms else (), cache_sources=cache is not None, info=info,
        start_latents=start_latents, prompt_span=energy.sources[SELF].span if SELF in energy.sources else None)

    if cache is not None:
        for spec in sources:
            run = result.sources.get(spec.name)
            # a reused run comes back renamed, with the cached recordings themselves
            reused = spec.cached is not None and run is not None and run.recorded is spec.cached.recorded
            if spec.trajectory is None and run is not None and not reused:
                if spec.cached is not None:
                    cache.stale()
                cache.put(_cache_key(pipe, info, settings, spec.prompt, spec.seed), run)
    if "orig" not in result.sources:
        raise SGLError.single("E229", "internal error: the original run is missing")
    return Result.build(program, result, info, keys, settings, prompts)
