"""The public Python API: `sgl.compile(...) -> Program`, `Program.run(...) -> Result`.

A `Program` is a compiled energy program plus its effective settings (program values, then
keyword overrides). Running it is the runtime's job (`sgl.runtime.execute`), imported lazily
so that compiling never loads torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from sgl.diagnostics import SGLError

# diffusers' argument names accepted as aliases of SGL settings
_ALIASES = {
    "num_inference_steps": "steps",
    "guidance_scale": "cfg",
    "negative_prompt": "negative",
    "self_guidance_scale": "strength",
}

DEFAULTS: dict[str, Any] = {
    "negative": "",
    "seed": 0,
    "steps": 50,
    "cfg": None,         # the model's recommended classifier-free guidance scale (7.5 for SD)
    "strength": None,    # the model's recommended self-guidance strength (sgl/runtime/execute.py)
    "model": "shapes",
    "scheduler": "ddim",
    "resolution": None,  # the model's default resolution
    "layers": None,      # the model profile's default attention layers
    "features": None,    # the module whose output `feat()` reads; None = the model profile's
    "start": None,       # a loaded image to edit: start from its inverted noise
    "gradient": None,    # "raw" (the paper's v·σ·∇g), "unit" (∇g at unit RMS) or "balanced"; None = the model's
    "recurrence": None,  # times each guided step is taken (self-recurrence); None = the model's
    "warmup": None,      # share of the steps over which v ramps up to its full value; None = the model's
    "recurrence_until": None,  # share of the steps (from the first) whose guided steps recur; None = the model's
    "recurrence_early": None,  # share of the steps (from the first) whose recurring steps take one more
                               # take; None = the model's
    "recurrence_above": None,  # a guided step recurs only while its energy is above this share of the
                               # run's largest so far; None = the model's
}


def _read(source_or_path: str | os.PathLike) -> tuple[str, str, Path | None]:
    """(text, file name, base dir) of a program given as text or as a path."""
    if isinstance(source_or_path, os.PathLike) or (
        isinstance(source_or_path, str) and "\n" not in source_or_path and source_or_path.strip().endswith(".sgl")
    ):
        path = Path(source_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SGLError.single("E200", f"cannot read `{path}`: {exc.strerror or exc}",
                                  hint="check the path of the program file") from None
        return text, str(path), path.parent
    return str(source_or_path), "<input>", None


def parse(source: str, file: str = "<input>"):
    """Parse SGL text into its AST (raises SGLError)."""
    from sgl.syntax.parse import parse as _parse

    return _parse(source, file)


def check(source_or_path: str | os.PathLike):
    """Run the whole compiler half; returns the EnergyProgram (raises SGLError)."""
    from sgl.compiler import check_source

    text, file, base = _read(source_or_path)
    return check_source(text, file=file, base_dir=base)


@attrs.frozen
class Program:
    """A compiled SGL program: its energy IR and effective settings."""

    energy: Any            # sgl.ir.program.EnergyProgram
    settings: dict
    text: str
    file: str
    base_dir: Path | None = None

    @property
    def prompt(self) -> str:
        return self.settings["prompt"]

    def ir(self) -> str:
        """The energy IR as `sgl ir` prints it."""
        from sgl.ir.printer import format_ir

        return format_ir(self.energy)

    def run(self, pipe=None, *, device=None, dtype=None, progress: bool = True, cache=None, **overrides):
        """Sample the original and the edited image. `pipe`: None (the `model` setting,
        default the embedded `shapes`), a local diffusers folder, or a pipeline object."""
        from sgl.runtime.execute import execute

        program = self.with_settings(**overrides) if overrides else self
        try:
            return execute(program, pipe=pipe, device=device, dtype=dtype, progress=progress, cache=cache)
        except SGLError as error:
            # a diagnostic found at run time points into the program: give it the text to show
            error.sources = {**self.energy.texts, **error.sources}
            raise

    def with_settings(self, **overrides) -> "Program":
        return attrs.evolve(self, settings=_effective(self.settings, overrides))


def _effective(base: dict, overrides: dict) -> dict:
    """`base` with the overrides applied, each checked as its program line would be (all the
    problems at once, as the checker reports a program's)."""
    from sgl.check.settings import SETTINGS, check_override, override_problems

    out = dict(base)
    problems = []
    for key, value in overrides.items():
        key = _ALIASES.get(key, key)
        if value is None and key in SETTINGS:  # None: leave the setting as it is
            continue
        value, found = check_override(key, value)
        problems.extend(found)
        if not found:
            out[key] = value
    if not problems and any(_ALIASES.get(k, k) in ("recurrence", "scheduler") for k in overrides):
        problems.extend(override_problems(out))
    if problems:
        raise SGLError(problems)
    return out


def compile(source_or_path: str | os.PathLike, **settings) -> Program:
    """Compile SGL text or a `.sgl` file. Keyword settings override the program's (`seed=3`,
    `steps=20`, also diffusers' names `num_inference_steps`, `guidance_scale`)."""
    from sgl.compiler import check_source

    text, file, base = _read(source_or_path)
    energy = check_source(text, file=file, base_dir=base)
    effective = _effective({**DEFAULTS, **energy.settings}, settings)
    return Program(energy=energy, settings=effective, text=text, file=file, base_dir=base)
