"""DDIM inversion: a real image becomes a latent trajectory that can serve as a source.

Self-guidance reads a source's attention and features at every step, so a real photo needs a
noisy latent at every timestep of the sampler. Deterministic DDIM (η = 0) run backwards from
the encoded image gives them: z_{i} = √ᾱ_i·x̂₀ + √(1−ᾱ_i)·ε, with x̂₀ and ε from the UNet at
the latent one step less noisy, conditioned on the caption (no classifier-free guidance, which
would break the inversion). The DDIM formulas are written out here over the sampler's own
timesteps, so the trajectory lines up exactly with the steps of the guided run.
"""

from __future__ import annotations

import copy
import math

import torch

from sgl.diagnostics import SGLError, Span
from sgl.runtime.images import fit_image, load_image
from sgl.runtime.pipelines import ModelInfo, model_info
from sgl.runtime.sampler import Trajectory, encode_text, out_of_memory_error, scale_latents, vae_in_fp32


def prepare_image(image, height: int, width: int, *, span: Span | None = None):
    """A PIL image (or a path to one) resized and centre-cropped to height x width."""
    if not hasattr(image, "convert"):
        image = load_image(image, span=span)
    return fit_image(image.convert("RGB"), height, width)


def encode_image(pipe, image) -> torch.Tensor:
    """The VAE latent (distribution mean, scaled as the UNet expects) of a PIL image."""
    encoder = vae_in_fp32(pipe.vae)
    pixels = pipe.image_processor.preprocess(image).to(pipe._execution_device, encoder.dtype)
    with torch.no_grad():
        latents = scale_latents(pipe.vae, encoder.encode(pixels).latent_dist.mean)
    return latents.to(pipe.unet.dtype)


def _alphas(scheduler) -> tuple[list[float], float]:
    """ᾱ at each sampling timestep, and ᾱ where sampling ends (DDIM's final_alpha_cumprod)."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    timesteps = [float(t) for t in scheduler.timesteps]
    if alphas is None or any(t != int(t) for t in timesteps):
        raise SGLError.single("E226", f"real images cannot be inverted with {type(scheduler).__name__}",
                              hint="use the ddim scheduler (the default) with `load` images")
    final = getattr(scheduler, "final_alpha_cumprod", None)
    final = float(final) if final is not None else 1.0
    return [float(alphas[int(t)]) for t in timesteps], final


def invert(pipe, image, caption: str, *, steps: int = 50, height: int | None = None,
           width: int | None = None, scheduler=None, info: ModelInfo | None = None,
           span: Span | None = None, progress: bool = False) -> Trajectory:
    """DDIM-invert `image` (PIL or path) with `caption` over the timesteps that `scheduler`
    (default: the pipeline's) uses for `steps` steps."""
    try:
        return _invert(pipe, image, caption, steps, height, width, scheduler, info, span, progress)
    except RuntimeError as exc:
        converted = out_of_memory_error(exc, span)
        if converted is None:
            raise
        raise converted from None


def _invert(pipe, image, caption, steps, height, width, scheduler, info, span, progress) -> Trajectory:
    info = info or model_info(pipe)
    height = height or info.default_resolution[0]
    width = width or info.default_resolution[1]
    picture = prepare_image(image, height, width, span=span)
    sched = copy.deepcopy(scheduler if scheduler is not None else pipe.scheduler)
    sched.set_timesteps(steps, device=pipe._execution_device)
    alphas, final_alpha = _alphas(sched)
    cond, _ = encode_text(pipe, info.family, caption, None, 1.0, (height, width))
    added = None
    if info.family == "sdxl":
        added = {"text_embeds": cond.text_embeds, "time_ids": cond.time_ids}
    latent = encode_image(pipe, picture)
    trajectory = [latent]
    indices = reversed(range(len(alphas)))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(list(indices), desc="inverting", unit="step", leave=False)
    with torch.no_grad():
        for i in indices:
            a_less_noisy = alphas[i + 1] if i + 1 < len(alphas) else final_alpha
            eps = pipe.unet(latent, sched.timesteps[i], encoder_hidden_states=cond.emb,
                            added_cond_kwargs=added, return_dict=False)[0]
            x0 = (latent - math.sqrt(1.0 - a_less_noisy) * eps) / math.sqrt(a_less_noisy)
            latent = math.sqrt(alphas[i]) * x0 + math.sqrt(1.0 - alphas[i]) * eps
            trajectory.insert(0, latent)
    return Trajectory(trajectory, [float(t) for t in sched.timesteps], caption, picture)
