"""The runtime: everything that touches tensors (DESIGN.md §3).

pipelines (load models) → profiles (which layers) → tokens (which columns) → attention + hooks
(record only what is needed) → sampler (the guided loop) and invert (real images); images
(atomic files). `evaluate` turns the IR into the sampler's energy callback. Submodules are
imported lazily so that `import sgl.runtime` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_pipeline": "pipelines", "ModelInfo": "pipelines", "make_scheduler": "pipelines",
    "Profile": "profiles", "Recorder": "hooks", "Recorded": "hooks", "SourceRows": "hooks",
    "sample": "sampler", "SourceSpec": "sampler", "SourceRun": "sampler", "StepInfo": "sampler",
    "EnergyOut": "sampler", "SampleResult": "sampler", "Trajectory": "sampler", "SELF": "sampler",
    "in_windows": "sampler", "decode_latents": "sampler",
    "invert": "invert", "pipeline_token_columns": "tokens",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"sgl.runtime.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sgl.runtime' has no attribute {name!r}")
