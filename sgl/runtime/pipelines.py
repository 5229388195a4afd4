"""Loading the diffusion model a program runs on, and what the runtime needs to know about it.

A model is a diffusers pipeline object, a local diffusers folder (Stable Diffusion 1.x/2.x or
SDXL, told apart by `model_index.json`), or `"shapes"`, the embedded default model. Nothing is
ever downloaded: folders load with `local_files_only=True`. Every way this can fail because of
what the user gave becomes an SGLError (E22x) that can point at the program's `model` line.
"""

from __future__ import annotations

import contextlib

import json
from dataclasses import dataclass
from pathlib import Path

from sgl.diagnostics import SGLError, Span
from sgl.runtime.profiles import Profile, default_profile

SHAPES_DIR = Path(__file__).resolve().parent.parent / "models" / "shapes" / "weights"
SD_CLASSES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}
SCHEDULERS = {
    "ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
}


@dataclass(frozen=True)
class ModelInfo:
    """Family ("sd" or "sdxl"), latent geometry, default image size (height, width) in pixels,
    the layer profile, and where the model came from (for reports)."""

    family: str
    latent_channels: int
    vae_scale_factor: int
    default_resolution: tuple[int, int]
    profile: Profile
    origin: str

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.vae_scale_factor, width // self.vae_scale_factor


def detect_family(pipe) -> str:
    """"sdxl" for pipelines with two text encoders and SDXL's added time embedding, else "sd"."""
    config = getattr(getattr(pipe, "unet", None), "config", None)
    if getattr(pipe, "text_encoder_2", None) is not None or getattr(config, "addition_embed_type", None) == "text_time":
        return "sdxl"
    return "sd"


def _check_components(pipe, origin: str, span: Span | None) -> None:
    needed = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    missing = [n for n in needed if getattr(pipe, n, None) is None]
    if missing:
        raise SGLError.single("E221", f"{origin} is not a Stable Diffusion pipeline (no {', '.join(missing)})",
                              span, hint="SGL runs StableDiffusionPipeline and StableDiffusionXLPipeline models")


def model_info(pipe, origin: str = "<pipeline object>", span: Span | None = None) -> ModelInfo:
    """What the runtime needs to know about a loaded pipeline."""
    _check_components(pipe, origin, span)
    family = detect_family(pipe)
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    sample = pipe.unet.config.sample_size
    sample_hw = (sample, sample) if isinstance(sample, int) else tuple(sample)
    return ModelInfo(family, int(pipe.unet.config.in_channels), scale,
                     (sample_hw[0] * scale, sample_hw[1] * scale),
                     default_profile(pipe.unet, family), origin)


def _folder_class(folder: Path, span: Span | None) -> str:
    index = folder / "model_index.json"
    if not index.is_file():
        raise SGLError.single("E221", f"{folder} is not a diffusers pipeline folder (no model_index.json)", span,
                              hint="give a folder saved with `pipeline.save_pretrained(...)`, or \"shapes\"")
    try:
        class_name = json.loads(index.read_text()).get("_class_name", "")
    except (OSError, ValueError) as exc:
        raise SGLError.single("E221", f"cannot read {index}: {exc}", span) from None
    if class_name not in SD_CLASSES:
        raise SGLError.single("E221", f"{folder} holds a {class_name or 'unknown'} pipeline, which SGL does not run",
                              span, hint="supported: StableDiffusionPipeline (SD 1.x/2.x), StableDiffusionXLPipeline")
    return class_name


def _dtype_keyword() -> str:
    """Newer diffusers spell `torch_dtype` as `dtype` (and warn about the old name)."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"


@contextlib.contextmanager
def _quiet_loading():
    """Loading a local folder is not news: no progress bars or info/warning chatter from
    diffusers and transformers (errors still surface as exceptions)."""
    from diffusers.utils import logging as d_logging
    from transformers.utils import logging as t_logging

    saved = (d_logging.get_verbosity(), t_logging.get_verbosity())
    d_logging.set_verbosity_error()
    t_logging.set_verbosity_error()
    d_logging.disable_progress_bar()
    t_logging.disable_progress_bar()
    try:
        yield
    finally:
        d_logging.set_verbosity(saved[0])
        t_logging.set_verbosity(saved[1])
        d_logging.enable_progress_bar()
        t_logging.enable_progress_bar()


def _load_folder(folder: Path, dtype, span: Span | None):
    import diffusers

    class_name = _folder_class(folder, span)
    kwargs = {"local_files_only": True}
    if dtype is not None:
        kwargs[_dtype_keyword()] = dtype
    if class_name == "StableDiffusionPipeline":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        with _quiet_loading():
            return getattr(diffusers, class_name).from_pretrained(str(folder), **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure here is a broken or incomplete folder
        raise SGLError.single("E222", f"cannot load the pipeline in {folder}", span,
                              notes=(f"{type(exc).__name__}: {exc}",)) from None


def resolve_model_path(model: str, span: Span | None = None) -> Path:
    """The folder a model name stands for; "shapes" is the embedded model."""
    if model == "shapes":
        if not (SHAPES_DIR / "model_index.json").is_file():
            raise SGLError.single("E220", "the embedded `shapes` model is not installed", span,
                                  hint="train it (sgl/models/shapes) or give a local diffusers folder with `model`",
                                  notes=(f"looked in {SHAPES_DIR}",))
        return SHAPES_DIR
    path = Path(model).expanduser()
    if not path.is_dir():
        raise SGLError.single("E220", f"model folder {model!r} does not exist", span,
                              hint="`model` takes \"shapes\" or the path of a local diffusers folder; nothing is downloaded")
    return path


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(model="shapes", device=None, dtype=None, *, span: Span | None = None):
    """(pipeline, ModelInfo) for a pipeline object, a local folder, or "shapes".

    A folder loads on `device` (default: CUDA when present, else CPU) in `dtype` (default: fp16
    on CUDA, fp32 on CPU); a pipeline object is moved only when device/dtype are given."""
    import torch

    if isinstance(model, (str, Path)):
        folder = resolve_model_path(str(model), span)
        device = device or default_device()
        if dtype is None:
            dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        pipe = _load_folder(folder, dtype, span)
        origin = "shapes" if folder == SHAPES_DIR else str(folder)
        pipe._sgl_origin = origin  # a pipeline SGL loaded keeps its folder's defaults when passed back
        pipe._sgl_pixel_decoder = load_pixel_decoder(folder, span)
    else:
        pipe, origin = model, getattr(model, "_sgl_origin", "<pipeline object>")
    info = model_info(pipe, origin, span)
    if device is not None or dtype is not None:
        try:
            with _quiet_loading():  # diffusers warns about casting even when nothing changes
                pipe.to(device=device, dtype=dtype)
        except (RuntimeError, AssertionError) as exc:
            raise SGLError.single("E223", f"cannot move the model to {device}", span,
                                  notes=(f"{type(exc).__name__}: {exc}",)) from None
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.eval().requires_grad_(False)
    decoder = getattr(pipe, "_sgl_pixel_decoder", None)
    if decoder is not None:
        decoder.to(pipe.unet.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, info


def load_pixel_decoder(folder: Path, span: Span | None = None):
    """The distilled x̂₀ → picture decoder a folder ships in `pixel_decoder/` (the `shapes` model
    does: sgl/models/shapes/pixel_decoder.py), or None: `pixels()` then decodes with the VAE."""
    from sgl.models.shapes.pixel_decoder import FOLDER, load

    try:
        return load(folder)
    except Exception as exc:  # noqa: BLE001 - any failure here is a broken or incomplete folder
        raise SGLError.single("E222", f"cannot load the picture decoder in {Path(folder) / FOLDER}", span,
                              hint="remove the folder to decode `pixels()` with the VAE, or distil it again "
                                   "(python -m sgl.models.shapes.pixel_decoder)",
                              notes=(f"{type(exc).__name__}: {exc}",)) from None


def make_scheduler(pipe, name: str | None, *, span: Span | None = None):
    """A fresh scheduler of kind `name` (ddim, ddpm, pndm, euler, euler_a, dpm) from the
    pipeline's scheduler config; None keeps a copy of the pipeline's own."""
    import copy

    import diffusers

    if name is None:
        return copy.deepcopy(pipe.scheduler)
    class_name = SCHEDULERS.get(name.lower())
    if class_name is None:
        raise SGLError.single("E224", f"unknown scheduler {name!r}", span,
                              hint="choose one of " + ", ".join(SCHEDULERS))
    return getattr(diffusers, class_name).from_config(pipe.scheduler.config)
