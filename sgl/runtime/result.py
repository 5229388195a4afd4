"""`Result`: what a run produced — the edited image, the original, every source image, the
per-step trace — and `save(dir)`, which writes them all atomically with an HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import attrs
import numpy as np

from sgl.files import png_bytes, write_bytes_atomic, write_text_atomic


def overlay(image, attention, alpha: float = 0.6):
    """`attention` ([h, w] tensor) min–max normalised, as a red heat map over `image`."""
    from PIL import Image

    a = attention.detach().float().cpu().numpy()
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-8)
    heat = Image.fromarray((a * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
    base = np.asarray(image.convert("RGB")).astype(np.float32) * (1 - alpha)
    red = np.zeros_like(base)
    red[..., 0] = np.asarray(heat, dtype=np.float32)
    red[..., 1] = np.asarray(heat, dtype=np.float32) * 0.3
    return Image.fromarray(np.clip(base + alpha * red, 0, 255).astype(np.uint8))


@attrs.frozen
class Result:
    """One run of a program. `image` is the edited image, `original` the unguided one (same
    prompt and seed), `sources` every other run's image by name; `trace` has one dict per
    sampling step ({step, timestep, sigma, guided, terms: {name: weighted energy}, total,
    grad_norm, skipped, met (every term at its minimum: no step), scales: {name: RMS of the
    term's own gradient} where `gradient "balanced"` measured it}); `terms` describes each term
    (name, label, weight, window, file:line)."""

    image: Any
    original: Any
    sources: dict
    trace: list
    terms: list
    warnings: list
    settings: dict
    timings: dict
    program_text: str
    ir_text: str
    overlays: dict = attrs.field(factory=dict, repr=False)

    @classmethod
    def build(cls, program, sampled, info, keys: Mapping[str, set], settings: Mapping,
              prompts: Mapping[str, str]) -> "Result":
        from sgl.runtime.evaluate import term_names
        from sgl.runtime.execute import with_phrases

        energy = program.energy
        names = term_names(energy.terms)
        terms = [{"name": n, "label": t.label, "weight": t.weight, "window": list(t.window), "kind": t.kind,
                  "distance": t.distance,
                  "at": f"{t.span.file}:{t.span.line}" if t.span is not None else None}
                 for n, t in zip(names, energy.terms)]
        original = sampled.sources["orig"].image
        others = {name: run.image for name, run in sampled.sources.items() if name != "orig"}
        overlays = {}
        for key in sorted(keys.get("self", ())):
            label = " ".join(key)
            figures = []
            for step in sorted(sampled.kept):
                for run_name, image, tag in (("orig", original, "original"), ("self", sampled.image, "edited")):
                    rec = sampled.kept[step].get(run_name)
                    attn = with_phrases(rec, [key], prompts[run_name]).attn if rec is not None else {}
                    if key in attn:
                        figures.append((f"{tag}, step {step}", overlay(image, attn[key][0])))
            if figures:
                overlays[label] = figures
        settings = dict(settings)  # the effective ones (defaults resolved against the model)
        settings["model"] = info.origin
        return cls(image=sampled.image, original=original, sources=others,
                   trace=[row.to_dict() for row in sampled.trace], terms=terms,
                   warnings=list(sampled.warnings), settings=settings, timings=dict(sampled.timings),
                   program_text=program.text, ir_text=program.ir(), overlays=overlays)

    def to_json(self) -> dict:
        return {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.settings.items()},
                "terms": self.terms, "steps": self.trace, "warnings": self.warnings, "timings": self.timings}

    def save(self, directory: str | Path) -> Path:
        """Write original.png, edited.png, <source>.png, trace.json and report.html into
        `directory` (created if needed). Each file is replaced atomically."""
        from sgl.report import write_report

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out / "original.png", png_bytes(self.original))
        write_bytes_atomic(out / "edited.png", png_bytes(self.image))
        for name, image in self.sources.items():
            write_bytes_atomic(out / f"{name}.png", png_bytes(image))
        write_text_atomic(out / "trace.json", json.dumps(self.to_json(), indent=1, default=str))
        images = {"original": self.original, "edited": self.image, **self.sources}
        write_report(out / "report.html", title=f"SGL: {self.settings.get('prompt', '')}",
                     program_text=self.program_text, ir_text=self.ir_text, images=images,
                     overlays=self.overlays, trace=self.trace,
                     term_labels={t["name"]: t["label"] for t in self.terms}, settings=self.settings,
                     warnings=self.warnings)
        return out
