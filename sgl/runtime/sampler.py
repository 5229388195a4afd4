"""The guided sampling loop of Diffusion Self-Guidance.

    eps_hat = eps_u + s·(eps_c − eps_u) + v·σ_t·∇_{z_t} g

diffusers' pipelines cannot do this (their step callback runs after the scheduler, under
no_grad, and sees only latents), so SGL runs its own loop. Per step, every row that needs no
gradient — the guided run's unconditional row, both rows of each generated source, the
conditional row of each inverted real image at its stored latent, and for a source whose
prompt differs from the guided one a row of its latent under the guided prompt that only its
features are read from (`_read_features_under_prompt`) — runs in ONE no-grad batch that records
only the sources' conditional rows; then only the guided conditional row runs
under autograd, with recording, and the energy callback turns what was recorded into a scalar
whose gradient w.r.t. the UNet input steers the step. Every run keeps its own scheduler copy
and random generator, so each source is exactly the image `pipe(prompt, generator=seed)` would
give, and with no energy (or v = 0) the guided image is the plain pipeline output.

The energy is a callback, so this module knows nothing of the IR:
    energy(step: StepInfo, recorded: dict[str, Recorded]) -> EnergyOut | None
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Collection, Hashable, Mapping, Sequence

import torch

from sgl.check.settings import GRADIENTS
from sgl.runtime.balance import Balancer
from sgl.diagnostics import SGLError, Span
from sgl.ir.ops import COMPUTED, LATENT, PIXELS
from sgl.runtime.hooks import Recorded, Recorder, SourceRows
from sgl.runtime.pipelines import ModelInfo, model_info
from sgl.runtime.profiles import resolve_feature_layers, select_attention_layers
from sgl.runtime.tokens import Nth, pipeline_token_columns

SELF = "self"  # the guided run's name in `recorded` (matches sgl.check.program.SELF)
FEATURE_ROW = "features"  # the slot of a source's row that reads its features under the guided prompt
FEATURE_PROMPTS = ("guided", "own")  # under which prompt a source's features are read
# Below this sum of |weighted term values| every term is at its minimum up to float noise (the
# rounded kinks of sgl/ir/ops.py leave ~1e-9 there; a real miss of 1e-5 at weight 1 is 5e-7):
# `gradient "unit"` would scale that noise's gradient up to a full step, so the step goes unguided.
MET_ENERGY = 1e-7

TokenRequest = Mapping[Hashable, "str | Nth | Sequence[int]"]  # key → phrase of the run's prompt (its first place, or its n-th: Nth), or columns


# ---------------------------------------------------------------------------------------------
# Public data


def unit_rms(grad: torch.Tensor) -> torch.Tensor:
    """∇g scaled to unit root-mean-square per row (a zero gradient stays zero): `gradient
    "unit"`, so that v is a step size in noise units whatever the energy's scale (on the tiny
    `shapes` model the raw gradient's norm falls more than tenfold along a run and differs
    between scenes: no single raw v moved objects without wrecking others)."""
    rms = grad.flatten(1).pow(2).mean(1).sqrt().view(-1, *([1] * (grad.dim() - 1)))
    return grad / rms.clamp(min=1e-12)


def warmup_factor(step: "StepInfo", warmup: float) -> float:
    """The share of v that step `step` uses under `warmup w`: (index + 1) / (w·steps) for the
    first w·steps steps, then 1. A full-strength first step of a strong edit (a resize) pushed the
    picture off what the model draws — its x̂₀ washed out, a kept object faded and was drawn
    again elsewhere; ramping v up over the first 20 % of the steps let the layout form first
    (docs/benchmarks.md, session 22)."""
    ramp = warmup * step.num_steps
    return 1.0 if ramp <= 0 else min(1.0, (step.index + 1) / ramp)


def renoise(z_prev: torch.Tensor, alpha_t: float, alpha_prev: float, noise: torch.Tensor) -> torch.Tensor:
    """z_{t−1} (at ᾱ_prev) noised forward to step t (ᾱ_t ≤ ᾱ_prev): the diffusion's own
    transition, sqrt(ᾱ_t/ᾱ_prev)·z + sqrt(1 − ᾱ_t/ᾱ_prev)·ε, so a latent distributed as the
    forward process at t−1 comes out distributed as at t."""
    ratio = alpha_t / alpha_prev
    return math.sqrt(ratio) * z_prev + math.sqrt(max(1.0 - ratio, 0.0)) * noise


def clean_latent(model_input: torch.Tensor, output: torch.Tensor, alpha: float, prediction_type: str) -> torch.Tensor:
    """The model's estimate x̂₀ of the clean latent from one row's input and output at ᾱ_t =
    `alpha` (what `latent()` reads). The model input is √ᾱ·x₀ + √(1 − ᾱ)·ε for DDPM-style
    schedulers and, scaled by `scale_model_input`, for σ-space ones (Euler) too."""
    if prediction_type == "epsilon":
        return (model_input - math.sqrt(1.0 - alpha) * output) / math.sqrt(alpha)
    if prediction_type == "v_prediction":
        return math.sqrt(alpha) * model_input - math.sqrt(1.0 - alpha) * output
    return output  # "sample"


def hooked(features: Sequence[str]) -> tuple[str, ...]:
    """The feature layers a module hook records: all but x̂₀ and its decoded picture
    (`COMPUTED`), which the sampler computes."""
    return tuple(f for f in features if f not in COMPUTED)


def alpha_bar(scheduler, timestep) -> float:
    """ᾱ at a timestep (the nearest training step for a fractional one)."""
    return float(scheduler.alphas_cumprod[int(round(float(timestep)))])


def step_alphas(scheduler, timestep) -> tuple[float, float]:
    """(ᾱ_t, ᾱ of the step's target) exactly as the scheduler's own step uses them: DDIM steps to
    t − T/N (ᾱ = `final_alpha_cumprod` below 0), DDPM to `previous_timestep(t)` (ᾱ = 1 below 0)."""
    alphas = scheduler.alphas_cumprod
    t = int(timestep)
    if hasattr(scheduler, "previous_timestep"):
        prev, final = int(scheduler.previous_timestep(timestep)), 1.0
    else:
        prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        final = float(scheduler.final_alpha_cumprod)
    return float(alphas[t]), (float(alphas[prev]) if prev >= 0 else final)


@dataclass(frozen=True)
class StepInfo:
    """Where the sampler is: step `index` of `num_steps` (0-based), the scheduler timestep,
    σ_t, and `fraction` = index / num_steps (the IR's window coordinate)."""

    index: int
    num_steps: int
    timestep: float
    sigma: float

    @property
    def fraction(self) -> float:
        return self.index / max(self.num_steps, 1)


@dataclass
class EnergyOut:
    """An energy evaluation: `total` is differentiable, shape [] or [B] (one value per guided
    row); `terms` holds each term's value (weighted, as a float) for the trace. `parts`, when
    given, splits `total` into its terms, name → (weight, unweighted differentiable value), with
    total = Σ weight·value: `gradient "balanced"` needs them (without, it acts as "unit")."""

    total: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)
    parts: dict[str, tuple[float, torch.Tensor]] = field(default_factory=dict)


EnergyFn = Callable[[StepInfo, dict[str, Recorded]], "EnergyOut | None"]


def in_windows(windows: Sequence[tuple[float, float]]) -> Callable[[StepInfo], bool]:
    """A step predicate for a union of [start, end) windows in step fractions, as the IR's
    `Term.active`: step i of N is inside when start ≤ i/N < end (end = 1.0 includes the last)."""
    spans = [(float(a), float(b)) for a, b in windows]
    return lambda step: any(a <= step.fraction < b for a, b in spans)


@dataclass
class Trajectory:
    """An inverted real image: `latents[i]` is the latent entering sampling step i (at
    `timesteps[i]`), `latents[-1]` the clean encoded image; `caption` conditions its rows."""

    latents: list[torch.Tensor]
    timesteps: list[float]
    caption: str
    image: object = None  # the input image as it was encoded (PIL)


@dataclass
class SourceRun:
    """A finished source run: its image (PIL), final latents, and — when kept — what it
    recorded at each step (`recorded[i]`, detached, None where nothing was recorded).
    `settings` identifies the run, so that a cached run is reused only for the same settings."""

    name: str
    image: object
    latents: torch.Tensor
    recorded: list[Recorded | None] = field(default_factory=list)
    settings: tuple = ()
    inputs: list = field(default_factory=list)  # the model input of each step (kept with `recorded`)


@dataclass
class SourceSpec:
    """A run that properties are read from.

    Generated: `prompt` (+ `negative`, `seed`; None = the guided run's). Real image: a
    `trajectory` from `invert` (its caption is the prompt). `tokens`: group key → a phrase of
    the source's prompt (resolved to token columns) or explicit columns; `features`: feature
    layer names ("default" = the profile's); `when`: at which steps to record (None = all);
    `cached`: a previous SourceRun to reuse when its settings match; `span`: program location
    for errors about this source."""

    name: str
    prompt: str = ""
    negative: str | None = None
    seed: int | None = None
    trajectory: Trajectory | None = None
    tokens: TokenRequest = field(default_factory=dict)
    features: Sequence[str] = ()
    when: Callable[[StepInfo], bool] | None = None
    cached: SourceRun | None = None
    span: Span | None = None


@dataclass
class StepTrace:
    """One sampling step in the trace (JSON-friendly)."""

    step: int
    timestep: float
    sigma: float
    guided: bool = False
    terms: dict[str, float] = field(default_factory=dict)
    total: float | None = None
    grad_norm: float | None = None
    skipped: bool = False
    met: bool = False  # every term at its minimum up to float noise: no guidance (MET_ENERGY)
    scales: dict[str, float] = field(default_factory=dict)  # `balanced`: term gradient RMS measured here

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def size(self) -> float | None:
        """How far the step's energy is from met: the sum of |weighted term values| (the total
        where no term was traced); None where the energy was not evaluated."""
        if self.terms:
            return sum(abs(v) for v in self.terms.values())
        return None if self.total is None else abs(self.total)


@dataclass
class SampleResult:
    """The guided image (PIL) and latents, every source's run, the per-step trace, warnings,
    recorded tensors of every run at the `keep_steps` (step → name → Recorded), timings (s)."""

    image: object
    latents: torch.Tensor
    sources: dict[str, SourceRun]
    trace: list[StepTrace]
    warnings: list[str]
    kept: dict[int, dict[str, Recorded]]
    timings: dict[str, float]


# ---------------------------------------------------------------------------------------------
# Internal run state


@dataclass
class _Cond:
    """Conditioning of one UNet row: text embeddings [1, T, D], and for SDXL pooled text
    embeddings [1, P] and time ids [1, 6]."""

    emb: torch.Tensor
    text_embeds: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None


@dataclass
class _Run:
    name: str
    kind: str  # "self", "generate", "inverted", "cached"
    cond: _Cond | None = None
    uncond: _Cond | None = None
    latents: torch.Tensor | None = None
    scheduler: object = None
    step_kwargs: dict = field(default_factory=dict)
    tokens: dict[Hashable, list[int]] = field(default_factory=dict)
    features: tuple[str, ...] = ()
    when: Callable[[StepInfo], bool] | None = None
    trajectory: Trajectory | None = None
    cached: SourceRun | None = None
    settings: tuple = ()
    records: list[Recorded | None] = field(default_factory=list)
    inputs: list[torch.Tensor] = field(default_factory=list)  # model inputs of the cond row, when cached
    prompt: str = ""
    # when set, the features are read from a row of their own under this conditioning (the
    # guided run's), not under the source's prompt: see `_Sampler._read_features_under_prompt`
    feature_cond: _Cond | None = None
    # the steps at which a computed feature (x̂₀, its picture) is needed, when fewer than the
    # run records at (`features_at`)
    computed_when: dict[str, Callable[[StepInfo], bool]] = field(default_factory=dict)

    def records_at(self, step: StepInfo) -> bool:
        return bool(self.tokens or self.features) and (self.when is None or self.when(step))

    def features_at(self, step: StepInfo) -> tuple[str, ...]:
        """The features to record at `step`: a computed one only where a term reads it (a
        picture costs a VAE decode, and under guidance its backward)."""
        if not self.computed_when:
            return self.features
        return tuple(f for f in self.features if f not in self.computed_when or self.computed_when[f](step))


# ---------------------------------------------------------------------------------------------
# Text, latents, schedulers


def encode_text(pipe, family: str, prompt: str, negative: str | None, cfg: float,
                size: tuple[int, int]) -> tuple[_Cond, _Cond | None]:
    """Conditional and (when cfg > 1) unconditional conditioning, as the pipeline encodes them."""
    device = pipe._execution_device
    use_cfg = cfg > 1.0
    if family == "sdxl":
        emb, neg, pooled, neg_pooled = pipe.encode_prompt(
            prompt=prompt, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=use_cfg, negative_prompt=negative)
        projection = (pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None
                      else int(pooled.shape[-1]))
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=emb.dtype,
                                          text_encoder_projection_dim=projection).to(device)
        cond = _Cond(emb, pooled.to(device), time_ids)
        return cond, (_Cond(neg, neg_pooled.to(device), time_ids) if use_cfg else None)
    emb, neg = pipe.encode_prompt(prompt, device, 1, use_cfg, negative)
    return _Cond(emb), (_Cond(neg) if use_cfg else None)


def initial_latents(pipe, info: ModelInfo, scheduler, seed: int, size: tuple[int, int],
                    dtype) -> tuple[torch.Tensor, torch.Generator]:
    """The starting noise `pipe(..., generator=torch.Generator().manual_seed(seed))` draws, and
    that generator (stochastic schedulers keep drawing from it)."""
    from diffusers.utils.torch_utils import randn_tensor

    generator = torch.Generator("cpu").manual_seed(int(seed))
    height, width = info.latent_size(*size)
    shape = (1, info.latent_channels, height, width)
    noise = randn_tensor(shape, generator=generator, device=pipe._execution_device, dtype=dtype)
    return noise * scheduler.init_noise_sigma, generator


def step_kwargs(scheduler, generator, eta: float) -> dict:
    accepted = set(inspect.signature(scheduler.step).parameters)
    out = {}
    if "eta" in accepted:
        out["eta"] = eta
    if "generator" in accepted:
        out["generator"] = generator
    return out


def sigma_of(scheduler, timestep) -> float:
    """σ_t of the step about to be taken: s/sqrt(1+s²) with s = sigmas[step_index] for
    k-diffusion-style schedulers (Euler, …), sqrt(1 − ᾱ_t) for DDIM/DDPM/PNDM-style ones."""
    step_index = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if step_index is not None and sigmas is not None:
        s = float(sigmas[step_index])
        return s / math.sqrt(1.0 + s * s)
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise SGLError.single("E225", f"σ_t is not defined for the scheduler {type(scheduler).__name__}",
                              hint="use ddim (default), ddpm, pndm or euler")
    return math.sqrt(1.0 - float(alphas[int(timestep)]))


def to_model_output(delta_eps: torch.Tensor, prediction_type: str, sigma: float) -> torch.Tensor:
    """A change of the predicted noise ε expressed in what the model predicts, at fixed z_t with
    z_t = α·x0 + σ·ε (α = sqrt(1 − σ²)): v = (ε − σ·z_t)/α gives Δv = Δε/α, and
    x0 = (z_t − σ·ε)/α gives Δx0 = −(σ/α)·Δε."""
    alpha = math.sqrt(max(1.0 - sigma * sigma, 1e-12))
    if prediction_type == "v_prediction":
        return delta_eps / alpha
    if prediction_type == "sample":
        return delta_eps * (-sigma / alpha)
    return delta_eps


def _latent_stats(vae, latents: torch.Tensor):
    """SDXL-style per-channel latent (mean, std) as tensors shaped to broadcast over `latents`,
    or None when the VAE has only a scaling factor."""
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None
    view = (1, latents.shape[1], 1, 1)
    return (torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(view),
            torch.tensor(std, device=latents.device, dtype=latents.dtype).view(view))


def scale_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents as the VAE encodes them → as the UNet sees them."""
    stats = _latent_stats(vae, latents)
    if stats is None:
        return latents * vae.config.scaling_factor
    mean_t, std_t = stats
    return (latents - mean_t) * vae.config.scaling_factor / std_t


def unscale_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents as the UNet sees them → as the VAE decodes them (the inverse of `scale_latents`)."""
    stats = _latent_stats(vae, latents)
    if stats is None:
        return latents / vae.config.scaling_factor
    mean_t, std_t = stats
    return latents * std_t / vae.config.scaling_factor + mean_t


def vae_in_fp32(vae):
    """The VAE to encode and decode with: an fp32 copy (made once per VAE) when the fp16 VAE must
    be upcast to run without overflow (SDXL's `force_upcast`), else the VAE itself."""
    if not (vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)):
        return vae
    upcast = getattr(vae, "_sgl_fp32_copy", None)
    if upcast is None:
        upcast = copy.deepcopy(vae).to(torch.float32)
        object.__setattr__(vae, "_sgl_fp32_copy", upcast)  # not a submodule: kept out of state_dict
    return upcast


def decode_pixels(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents [B, C, h, w] → RGB [B, 3, H, W], about [0, 1] (not clamped, so that a gradient
    reaches saturated colours): what `pixels()` reads, differentiable when `latents` is."""
    decoder = vae_in_fp32(vae)
    image = decoder.decode(unscale_latents(vae, latents.to(decoder.dtype)), return_dict=False)[0]
    return image * 0.5 + 0.5


def guidance_picture(pipe, latents: torch.Tensor) -> torch.Tensor:
    """What `pixels()` reads: x̂₀ through the folder's distilled decoder when it ships one (the
    `shapes` model: a quarter of the VAE's cost, trained to match it; MODEL_CARD.md), else
    through the VAE (`decode_pixels`)."""
    decoder = getattr(pipe, "_sgl_pixel_decoder", None)
    if decoder is None:
        return decode_pixels(pipe.vae, latents)
    return decoder(latents.to(torch.float32))


def decode_latents(pipe, latents: torch.Tensor) -> list:
    """Latents → PIL images, as the pipelines decode them (SDXL's latent statistics and fp16
    VAE upcasting included)."""
    with torch.no_grad():
        image = decode_pixels(pipe.vae, latents) * 2 - 1
        return pipe.image_processor.postprocess(image, output_type="pil")


# ---------------------------------------------------------------------------------------------
# The loop


class _Sampler:
    """State of one guided sampling call; `run()` does the work."""

    def __init__(self, pipe, info, *, prompt, negative, seed, steps, cfg, size, strength, gradient,
                 recurrence, recurrence_until, recurrence_above, recurrence_early, warmup, energy, guide_when,
                 scheduler, attn_layers, layer_span, tokens, features, sources, eta, checkpointing, loss_scale,
                 progress, keep_steps, cache_sources, start_latents, observe, prompt_span, feature_prompt="guided",
                 computed_when=None):
        self.pipe, self.info = pipe, info
        if feature_prompt not in FEATURE_PROMPTS:
            raise ValueError(f"feature_prompt must be one of {FEATURE_PROMPTS}, not {feature_prompt!r}")
        self.feature_prompt = feature_prompt
        self.unet = pipe.unet
        self.steps, self.cfg, self.size = int(steps), float(cfg), size
        self.strength, self.energy, self.guide_when = float(strength), energy, guide_when
        if gradient not in GRADIENTS:
            raise SGLError.single("E028", f"unknown gradient mode `{gradient}`",
                                  hint=f"gradient modes are {', '.join(GRADIENTS)}")
        self.unit_gradient = gradient in ("unit", "balanced")
        self.balancer = Balancer() if gradient == "balanced" else None
        self.observe = observe
        self.eta, self.checkpointing = eta, checkpointing
        self.dtype = self.unet.dtype
        self.low_precision = self.dtype in (torch.float16, torch.bfloat16)
        # fp16 gradients of small energies underflow: scale the loss up, the gradient down
        default_scale = 1024.0 if self.dtype == torch.float16 else 1.0
        self.loss_scale = float(loss_scale if loss_scale is not None else default_scale)
        self.progress, self.keep_steps, self.cache_sources = progress, set(keep_steps or ()), cache_sources
        self.base_scheduler = scheduler if scheduler is not None else pipe.scheduler
        self.prediction_type = getattr(self.base_scheduler.config, "prediction_type", "epsilon")
        self.recurrence = _recurrence(recurrence, self.base_scheduler)
        self.recurrence_until = float(recurrence_until)
        self.recurrence_above = float(recurrence_above)
        self.recurrence_early = float(recurrence_early)
        self.peak_energy = 0.0  # the largest `StepTrace.size` of a guided step's first take so far
        self.warmup = float(warmup)
        # the noise of re-taken steps: its own stream, so the run's other draws do not change
        self.recur_generator = torch.Generator("cpu").manual_seed(int(seed) + 0x5EC)
        self.attn_layers = select_attention_layers(self.unet, attn_layers, info.profile, span=layer_span)
        self.warnings: list[str] = []
        self.trace: list[StepTrace] = []
        self.kept: dict[int, dict[str, Recorded]] = {}
        self.guided = self._make_generated(SELF, "self", prompt, negative, seed, tokens, features, None, prompt_span)
        self.guided.computed_when = {f: when for f, when in (computed_when or {}).items() if f in COMPUTED}
        if start_latents is not None:
            self.guided.latents = start_latents.to(self.guided.latents).clone()
        self.seed, self.negative = seed, negative
        # model evaluations per run: `steps`, or more for multi-stage schedulers (PNDM's PRK warm-up)
        self.num_steps = len(self.guided.scheduler.timesteps)
        self.sources = [self._make_source(s) for s in sources]
        wanted = {f for r in [self.guided, *self.sources] for f in r.features}
        self.feature_layers = tuple(sorted(wanted))

    # -- construction ----------------------------------------------------------------------------

    def _columns(self, prompt: str, tokens: TokenRequest, span) -> dict[Hashable, list[int]]:
        out = {}
        for key, want in tokens.items():
            if isinstance(want, str):
                out[key] = pipeline_token_columns(self.pipe, prompt, want, span=span)
            elif isinstance(want, Nth):
                out[key] = pipeline_token_columns(self.pipe, prompt, want.word, span=span, occurrence=want.n)
            else:
                out[key] = [int(c) for c in want]
        return out

    def _settings(self, prompt, negative, seed, tokens, features) -> tuple:
        sched = self.base_scheduler
        return (prompt, negative, seed, self.steps, self.cfg, tuple(self.size), self.eta,
                type(sched).__name__, repr(sorted(dict(sched.config).items())), self.attn_layers,
                tuple(sorted((repr(k), tuple(v)) for k, v in tokens.items())), tuple(sorted(features)),
                str(self.dtype), self.info.origin)

    def _make_generated(self, name, kind, prompt, negative, seed, tokens, features, when, span) -> _Run:
        columns = self._columns(prompt, tokens, span)
        layers = resolve_feature_layers(self.unet, features, self.info.profile, span=span) if features else ()
        run = _Run(name, kind, tokens=columns, features=layers, when=when, prompt=prompt)
        run.settings = self._settings(prompt, negative, seed, columns, layers)
        run.scheduler = copy.deepcopy(self.base_scheduler)
        run.scheduler.set_timesteps(self.steps, device=self.pipe._execution_device)
        run.cond, run.uncond = encode_text(self.pipe, self.info.family, prompt, negative, self.cfg, self.size)
        run.latents, generator = initial_latents(self.pipe, self.info, run.scheduler, seed, self.size, run.cond.emb.dtype)
        run.step_kwargs = step_kwargs(run.scheduler, generator, self.eta)
        return run

    def _make_source(self, spec: SourceSpec) -> _Run:
        if spec.trajectory is not None:
            return self._make_inverted(spec)
        negative = self.negative if spec.negative is None else spec.negative
        seed = self.seed if spec.seed is None else spec.seed
        run = self._make_generated(spec.name, "generate", spec.prompt, negative, seed, spec.tokens,
                                   spec.features, spec.when, spec.span)
        self._read_features_under_prompt(run)
        if spec.cached is not None and self._cache_fits(spec.cached, run):
            run.kind, run.cached = "cached", spec.cached
        return run

    def _read_features_under_prompt(self, run: _Run) -> None:
        """Read a source's features under the guided run's prompt when its own prompt differs.

        A layer's activations carry the text they were computed under: with the `shapes`
        model the same object at the same noisy latent moves as far in feature space when its
        colour word is dropped from the caption as one colour lies from another
        (docs/benchmarks.md, session 13). An appearance copied from a reference drawn under
        another caption then asks the guided run to imitate that caption, not the look.
        Running the source's latent once more under the guided prompt (features only; its
        attention still comes from its own prompt, whose words it names) makes the two
        comparable, as they are for the original run, which shares the guided prompt."""
        # x̂₀ is an image estimate: its own prompt's is the best one, so it stays on the own row
        if hooked(run.features) and self.feature_prompt == "guided" and run.prompt != self.guided.prompt:
            run.feature_cond = self.guided.cond

    def _cache_fits(self, cached: SourceRun, run: _Run) -> bool:
        inputs_ok = run.feature_cond is None or len(cached.inputs) == self.num_steps
        return cached.settings == run.settings and len(cached.recorded) == self.num_steps and inputs_ok

    def _make_inverted(self, spec: SourceSpec) -> _Run:
        traj = spec.trajectory
        own = [float(t) for t in self.guided.scheduler.timesteps]
        if len(traj.latents) != len(own) + 1 or [float(t) for t in traj.timesteps] != own:
            raise SGLError.single(
                "E226", f"the inverted image `{spec.name}` was inverted over other timesteps than this run's",
                spec.span, hint="invert with the same number of steps and a DDIM-spaced scheduler")
        columns = self._columns(traj.caption, spec.tokens, spec.span)
        layers = resolve_feature_layers(self.unet, spec.features, self.info.profile, span=spec.span) if spec.features else ()
        cond, _ = encode_text(self.pipe, self.info.family, traj.caption, None, 1.0, self.size)
        run = _Run(spec.name, "inverted", cond=cond, tokens=columns, features=layers, when=spec.when,
                   trajectory=traj, prompt=traj.caption)
        self._read_features_under_prompt(run)
        return run

    # -- one step ------------------------------------------------------------------------------------

    def _step_info(self, index: int, timestep) -> StepInfo:
        sched = self.guided.scheduler
        sched.scale_model_input(self.guided.latents, timestep)  # initialises Euler's step_index
        return StepInfo(index, self.num_steps, float(timestep), sigma_of(sched, timestep))

    def _is_guided(self, step: StepInfo) -> bool:
        if self.energy is None or self.strength == 0.0:
            return False
        return self.guide_when is None or bool(self.guide_when(step))

    def _forward(self, recorder: Recorder, rows: list[tuple[torch.Tensor, _Cond]], timestep,
                 requests: list[SourceRows]) -> tuple[torch.Tensor, dict[str, Recorded]]:
        latents = torch.cat([r[0] for r in rows])
        emb = torch.cat([r[1].emb for r in rows])
        # x̂₀ and its picture are computed here, not hooked: the recorder sees the requests without them
        wants_computed = [r for r in requests if COMPUTED & set(r.features)]
        to_hook = [dataclasses.replace(r, features=hooked(r.features)) if r in wants_computed else r
                   for r in requests]
        added = None
        if self.info.family == "sdxl":
            added = {"text_embeds": torch.cat([r[1].text_embeds for r in rows]),
                     "time_ids": torch.cat([r[1].time_ids for r in rows])}
        recorder.expect(to_hook, latents.shape[-2:], device=latents.device, whole=bool(wants_computed))
        with recorder.forward_scope():
            eps = self.unet(latents, timestep, encoder_hidden_states=emb, added_cond_kwargs=added,
                            return_dict=False)[0]
        recorded = recorder.collect()
        if wants_computed:
            alpha = alpha_bar(self.guided.scheduler, timestep)
            for request in wants_computed:
                rows_ = torch.as_tensor(list(request.rows), device=latents.device)
                x0 = clean_latent(latents.index_select(0, rows_), eps.index_select(0, rows_), alpha, self.prediction_type)
                feats = recorded.setdefault(request.name, Recorded()).feats
                if LATENT in request.features:
                    feats[LATENT] = x0.to(torch.promote_types(x0.dtype, torch.float32))
                if PIXELS in request.features:
                    picture = guidance_picture(self.pipe, x0)
                    feats[PIXELS] = picture.to(torch.promote_types(picture.dtype, torch.float32))
        return eps, recorded

    def _no_grad_pass(self, recorder, step: StepInfo, timestep, guided_cond_here: bool,
                      record_guided: bool):
        """One batch for every row without gradient. Returns eps rows by (name, "u"/"c"), what
        the sources (and, when `record_guided`, the guided conditional row) recorded, and for
        the sources whose features came from a row under the guided prompt what their own row
        recorded (what the cache keeps)."""
        rows, slots, requests = [], [], []

        def add(run: _Run, which: str, latent: torch.Tensor, cond: _Cond, record: bool, features=None):
            if record:
                requests.append(SourceRows(run.name, [len(rows)], run.tokens,
                                           run.features if features is None else features))
            slots.append((run.name, which))
            rows.append((latent, cond))

        def add_feature_row(run: _Run, latent: torch.Tensor):
            requests.append(SourceRows((run.name, FEATURE_ROW), [len(rows)], {}, hooked(run.features)))
            slots.append((run.name, FEATURE_ROW))
            rows.append((latent, run.feature_cond))

        g = self.guided
        g_in = g.scheduler.scale_model_input(g.latents, timestep)
        if g.uncond is not None:
            add(g, "u", g_in, g.uncond, False)
        if guided_cond_here:
            add(g, "c", g_in, g.cond, record_guided and g.records_at(step), g.features_at(step))
        for run in self.sources:
            record = run.records_at(step)
            # the cache keeps a run's features under its own prompt, whatever this program reads
            own_features = None if run.feature_cond is None or self.cache_sources else \
                tuple(f for f in run.features if f in COMPUTED)
            if run.kind == "generate":
                src_in = run.scheduler.scale_model_input(run.latents, timestep)
                if run.uncond is not None:
                    add(run, "u", src_in, run.uncond, False)
                add(run, "c", src_in, run.cond, record, own_features)
                if self.cache_sources:
                    run.inputs.append(src_in.detach())
            elif run.kind == "inverted":
                src_in = run.trajectory.latents[step.index].to(device=g.latents.device, dtype=g.latents.dtype)
                add(run, "c", src_in, run.cond, record, own_features)
            elif run.kind == "cached" and run.feature_cond is not None:
                src_in = run.cached.inputs[step.index].to(device=g.latents.device, dtype=g.latents.dtype)
            else:
                continue
            if record and run.feature_cond is not None:
                add_feature_row(run, src_in)
        if not rows:
            return {}, {}, {}
        with torch.no_grad():
            eps, recorded = self._forward(recorder, rows, timestep, requests)
        own_records = {}
        for key in [k for k in recorded if isinstance(k, tuple)]:  # the feature rows replace the features
            name, fresh = key[0], recorded.pop(key)
            own = own_records[name] = recorded.get(name, Recorded())
            recorded[name] = Recorded(own.attn, {**own.feats, **fresh.feats})
        return {slot: eps[i:i + 1] for i, slot in enumerate(slots)}, recorded, own_records

    def _guided_pass(self, recorder, step: StepInfo, timestep, recorded: dict[str, Recorded],
                     record: StepTrace):
        """The guided conditional row under autograd; returns (eps_c, gradient or None)."""
        g = self.guided
        z_in = g.scheduler.scale_model_input(g.latents, timestep).detach().requires_grad_(True)
        request = [SourceRows(SELF, [0], g.tokens, g.features_at(step))]
        with torch.enable_grad():
            eps, mine = self._forward(recorder, [(z_in, g.cond)], timestep, request)
            mine.setdefault(SELF, Recorded())
            recorded = {**recorded, **mine}
            if step.index in self.keep_steps:
                self.kept.setdefault(step.index, {})[SELF] = mine[SELF].detached()
            out = self.energy(step, recorded)
            if out is None:
                return eps.detach(), None
            record.guided = True
            record.terms = {k: float(v) for k, v in out.terms.items()}
            total = out.total.float().sum()
            record.total = float(total.detach())
            if not total.requires_grad:
                self._warn(f"step {step.index}: the energy does not depend on the guided image; no guidance")
                return eps.detach(), None
            if self.unit_gradient and record.size() < MET_ENERGY:
                record.met = True
                return eps.detach(), None
            if self.balancer is not None and out.parts:
                grad = self.balancer.gradient(out.parts, z_in, step.index, self.loss_scale)
                record.scales = {name: float(self.balancer.scales[name].mean())
                                 for name, at in self.balancer.measured.items() if at == step.index}
                grad = None if grad is None else grad * self.loss_scale  # unscaled below
            else:
                (grad,) = torch.autograd.grad(total * self.loss_scale, z_in, allow_unused=True)
        if grad is None:
            self._warn(f"step {step.index}: the energy does not depend on the guided latent; no guidance")
            return eps.detach(), None
        grad = grad.float() / self.loss_scale
        if not torch.isfinite(grad).all() or not math.isfinite(record.total):
            record.skipped = True
            self._warn(f"step {step.index}: non-finite energy or gradient; guidance skipped for this step")
            if self.low_precision and self.loss_scale > 1.0:
                self.loss_scale /= 2.0
            return eps.detach(), None
        record.grad_norm = float(grad.norm())
        return eps.detach(), grad

    def _observe(self, step: StepInfo, recorded: dict[str, Recorded], record: StepTrace) -> None:
        """Evaluate the energy without guiding (for the trace of an unguided step)."""
        recorded.setdefault(SELF, Recorded())
        with torch.no_grad():
            out = self.energy(step, recorded)
        if out is not None:
            record.terms = {k: float(v) for k, v in out.terms.items()}
            record.total = float(out.total.float().sum())

    def _warn(self, message: str) -> None:
        self.warnings.append(message)

    def _cached_records(self, step: StepInfo, device, fresh: Mapping[str, Recorded]) -> dict[str, Recorded]:
        """The cached sources' recordings at `step`; features read this step under the guided
        prompt (`fresh`) replace the cached ones."""
        out = {}
        for run in self.sources:
            if run.kind == "cached" and run.records_at(step):
                rec = run.cached.recorded[step.index]
                if rec is None:
                    raise SGLError.single("E227", f"the cached run `{run.name}` has nothing recorded at step {step.index}")
                feats = {k: v.to(device) for k, v in rec.feats.items()}
                if run.name in fresh:
                    feats.update(fresh[run.name].feats)
                out[run.name] = Recorded({k: v.to(device) for k, v in rec.attn.items()}, feats)
        return out

    def _advance(self, run: _Run, eps_u, eps_c, timestep, extra=None) -> None:
        eps = eps_c if eps_u is None else eps_u + self.cfg * (eps_c - eps_u)
        if extra is not None:
            eps = eps + extra.to(eps.dtype)
        run.latents = run.scheduler.step(eps, timestep, run.latents, **run.step_kwargs, return_dict=False)[0]

    def _one_step(self, recorder, index: int, timestep) -> None:
        step = self._step_info(index, timestep)
        guided_now = self._is_guided(step)
        observe_now = not guided_now and self.observe and self.energy is not None
        record = StepTrace(index, step.timestep, step.sigma)
        eps, recorded, own_records = self._no_grad_pass(recorder, step, timestep, guided_cond_here=not guided_now,
                                                        record_guided=observe_now or step.index in self.keep_steps)
        recorded.update(self._cached_records(step, self.guided.latents.device, recorded))
        self._keep(step, recorded)
        grad, size = None, None
        if guided_now:
            eps_c, grad = self._guided_pass(recorder, step, timestep, recorded, record)
            size = record.size()
            if size is not None and math.isfinite(size):
                self.peak_energy = max(self.peak_energy, size)
        else:
            eps_c = eps[(SELF, "c")]
            if observe_now:
                self._observe(step, recorded, record)
        self._advance(self.guided, eps.get((SELF, "u")), eps_c, timestep, self._guidance(step, grad))
        if guided_now and self._recurs(step, size):
            early = step.index < self.recurrence_early * step.num_steps
            self._recur(recorder, step, timestep, recorded, self.recurrence - 1 + early)
        for run in self.sources:
            if run.kind == "generate":
                self._advance(run, eps.get((run.name, "u")), eps[(run.name, "c")], timestep)
            if run.kind == "generate" and self.cache_sources:
                rec = own_records.get(run.name, recorded.get(run.name))
                run.records.append(rec.detached() if rec is not None else None)
        self.trace.append(record)

    def _guidance(self, step: StepInfo, grad: torch.Tensor | None) -> torch.Tensor | None:
        """What the gradient adds to the guided row's model output: v·σ_t·∇g (unit-scaled for
        `gradient "unit"`), expressed in the model's prediction type."""
        if grad is None:
            return None
        if self.unit_gradient:
            grad = unit_rms(grad)
        v = self.strength * warmup_factor(step, self.warmup)
        return to_model_output(v * step.sigma * grad, self.prediction_type, step.sigma)

    def _recurs(self, step: StepInfo, size: float | None) -> bool:
        """Whether the guided step `step`, whose first take's `StepTrace.size` is `size`, is
        re-taken: with `recurrence` above 1, in the first `recurrence_until` of the steps (step i
        while i < u·steps), never the last step, and only while `size` is above
        `recurrence_above` times the largest of a first take so far: once most of the edit is
        met, a re-take costs a guided evaluation and changes little (docs/benchmarks.md,
        session 26)."""
        if not (self.recurrence > 1 and step.index + 1 < step.num_steps
                and step.index < self.recurrence_until * step.num_steps):
            return False
        if self.recurrence_above > 0.0 and size is not None and math.isfinite(size):
            return size > self.recurrence_above * self.peak_energy
        return True

    def _recur(self, recorder, step: StepInfo, timestep, recorded: dict[str, Recorded], retakes: int) -> None:
        """Universal Guidance's self-recurrence: `retakes` more times, noise the guided
        step's result back to step t (z_t = sqrt(ᾱ_t/ᾱ_p)·z_p + sqrt(1 − ᾱ_t/ᾱ_p)·ε) and take
        the guided step again, so that the guidance acts for longer where the layout forms
        while the model keeps the latent on its manifold. Sources are not re-run: their step-t
        recordings stay the targets."""
        g = self.guided
        alpha_t, alpha_prev = step_alphas(g.scheduler, timestep)
        for _ in range(retakes):
            noise = torch.randn(g.latents.shape, generator=self.recur_generator, dtype=torch.float32)
            g.latents = renoise(g.latents, alpha_t, alpha_prev, noise.to(g.latents))
            eps_u = None
            if g.uncond is not None:
                g_in = g.scheduler.scale_model_input(g.latents, timestep)
                with torch.no_grad():
                    eps_u, _ = self._forward(recorder, [(g_in, g.uncond)], timestep, [])
            inner = StepTrace(step.index, step.timestep, step.sigma)
            eps_c, grad = self._guided_pass(recorder, step, timestep, recorded, inner)
            self._advance(g, eps_u, eps_c, timestep, self._guidance(step, grad))

    def _keep(self, step: StepInfo, recorded: dict[str, Recorded]) -> None:
        if step.index in self.keep_steps:
            bucket = self.kept.setdefault(step.index, {})
            for name, rec in recorded.items():
                bucket[name] = rec.detached()

    def run(self) -> SampleResult:
        timings = {}
        start = time.perf_counter()
        timesteps = list(self.guided.scheduler.timesteps)
        bar = _progress(self.progress, len(timesteps))
        was_checkpointing = getattr(self.unet, "is_gradient_checkpointing", False)
        if self.checkpointing and not was_checkpointing:
            self.unet.enable_gradient_checkpointing()
        try:
            with Recorder(self.unet, self.attn_layers, hooked(self.feature_layers),
                          cut_autograd=not self.checkpointing) as recorder:
                for index, timestep in enumerate(timesteps):
                    self._one_step(recorder, index, timestep)
                    bar.update(1)
        finally:
            bar.close()
            if self.checkpointing and not was_checkpointing:
                self.unet.disable_gradient_checkpointing()
        timings["sampling"] = time.perf_counter() - start
        start = time.perf_counter()
        result = self._finish()
        timings["decoding"] = time.perf_counter() - start
        result.timings = timings
        return result

    def _finish(self) -> SampleResult:
        runs = [r for r in self.sources if r.kind == "generate"]
        latents = torch.cat([self.guided.latents] + [r.latents for r in runs])
        images = decode_latents(self.pipe, latents)
        sources = {}
        for run, image in zip(runs, images[1:]):
            sources[run.name] = SourceRun(run.name, image, run.latents.detach(), run.records, run.settings,
                                          run.inputs)
        for run in self.sources:
            if run.kind == "cached":  # possibly recorded under another program's name for it
                cached = run.cached
                sources[run.name] = cached if cached.name == run.name else dataclasses.replace(cached, name=run.name)
            elif run.kind == "inverted":
                sources[run.name] = SourceRun(run.name, run.trajectory.image, run.trajectory.latents[-1])
        return SampleResult(images[0], self.guided.latents.detach(), sources, self.trace, self.warnings,
                            self.kept, {})


# diffusers scheduler classes whose step is a function of (ε, t, z_t) only
STATELESS_SCHEDULERS = ("DDIMScheduler", "DDPMScheduler")


def _recurrence(value, scheduler) -> int:
    """The checked `recurrence`: an integer ≥ 1; above 1 only with a stateless scheduler."""
    value = 1 if value is None else value
    try:
        count = int(value)
        whole = float(value) == count
    except (TypeError, ValueError):
        count, whole = 0, False
    if count < 1 or not whole:
        raise SGLError.single("E231", f"`recurrence` must be an integer of 1 or more, not {value!r}")
    if count > 1 and type(scheduler).__name__ not in STATELESS_SCHEDULERS:
        raise SGLError.single("E231", f"`recurrence {count}` cannot be used with {type(scheduler).__name__}",
                              hint='use scheduler "ddim" or "ddpm", or recurrence 1',
                              notes=("recurrence re-takes each guided step; this scheduler keeps state between steps",))
    return count


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sampling", unit="step", leave=False)


def out_of_memory_error(exc: BaseException, span: Span | None = None) -> SGLError | None:
    """The diagnostic for a torch out-of-memory error (CUDA or CPU allocator), else None."""
    text = str(exc)
    oom_type = getattr(torch, "OutOfMemoryError", ())
    if not ((oom_type and isinstance(exc, oom_type)) or "out of memory" in text
            or "can't allocate memory" in text):
        return None
    return SGLError.single(
        "E230", "the model ran out of memory", span,
        hint="try gradient checkpointing, a smaller resolution, fewer reference images, or another device",
        notes=(text.splitlines()[0] if text else type(exc).__name__,))


def sample(pipe, *, prompt: str, negative: str | None = None, seed: int = 0, steps: int = 50,
           cfg: float = 7.5, height: int | None = None, width: int | None = None,
           strength: float = 0.0, gradient: str = "raw", recurrence: int = 1, recurrence_until: float = 1.0,
           recurrence_above: float = 0.0, recurrence_early: float = 0.0, warmup: float = 0.0,
           energy: EnergyFn | None = None,
           guide_when: Callable[[StepInfo], bool] | None = None,
           tokens: TokenRequest | None = None, features: Sequence[str] = (),
           sources: Sequence[SourceSpec] = (), scheduler=None, attn_layers: str | None = None,
           layer_span: Span | None = None, eta: float = 0.0, checkpointing: bool = False,
           loss_scale: float | None = None, progress: bool = False,
           keep_steps: Collection[int] = (), cache_sources: bool = False,
           start_latents: torch.Tensor | None = None, observe: bool = False,
           info: ModelInfo | None = None, prompt_span: Span | None = None,
           feature_prompt: str = "guided",
           computed_when: Mapping[str, Callable[[StepInfo], bool]] | None = None) -> SampleResult:
    """Sample the guided run (prompt/negative/seed) with self-guidance, alongside `sources`.

    `tokens`/`features`: what the guided run records for the energy (token group key → phrase of
    `prompt` or columns; feature layer names, "default" = the profile's). `energy` is called at
    every step where `guide_when(step)` holds (default: every step) and strength ≠ 0, with
    `recorded[name]` for "self" and each source that records at that step; it returns None when
    no term is active (then no gradient is taken). `gradient`: "raw" adds strength·σ_t·∇g to the
    noise prediction, "unit" the same with ∇g scaled to unit RMS (`unit_rms`). `scheduler`: a
    diffusers scheduler instance (default: a copy of the pipeline's). `recurrence`: take each
    guided step that many times, noising its result back in between (DDIM/DDPM only; see
    `_Sampler._recur`), in the first `recurrence_until` of the steps, while the step's energy is
    above `recurrence_above` times the largest so far; in the first `recurrence_early` of the
    steps a step that recurs is taken once more (the layout forms there). `warmup`: the share of the
    steps over which v ramps up linearly (`warmup_factor`). `attn_layers`: a `layers "…"`
    pattern (None = profile).
    `keep_steps`: steps at which every run's recordings are returned in `result.kept`;
    `cache_sources`: keep each generated source's per-step recordings (for reuse as `cached`).
    `start_latents`: start the guided run from these latents instead of the seed's noise (e.g.
    an inverted image's `trajectory.latents[0]`). `prompt_span`: where the program wrote the
    prompt, for errors about the guided run's words. `observe`: also evaluate the energy (no
    gradient) at steps that are not guided — strength 0 included — so that the trace of an
    unguided run can be compared with a guided one (its conditional row then takes the explicit
    attention path: equal to the plain pipeline to ~1e-5 rather than bitwise). `computed_when`:
    for a computed feature of the guided run ("latent", "pixels"), the steps at which it is
    computed (default: wherever the run records).
    """
    info = info or model_info(pipe)
    size = (height or info.default_resolution[0], width or info.default_resolution[1])
    if size[0] % info.vae_scale_factor or size[1] % info.vae_scale_factor:
        raise SGLError.single("E228", f"resolution {size[1]}x{size[0]} is not a multiple of {info.vae_scale_factor}")
    for name, value in (("recurrence_until", recurrence_until), ("recurrence_above", recurrence_above),
                        ("recurrence_early", recurrence_early), ("warmup", warmup)):
        if not 0.0 <= value <= 1.0:   # the range a program's setting is checked against (E022)
            raise SGLError.single("E231", f"`{name}` must be a number from 0 to 1, not {value!r}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names) or SELF in names:
        raise ValueError(f"source names must be unique and not {SELF!r}: {names}")
    try:
        sampler = _Sampler(pipe, info, prompt=prompt, negative=negative, seed=seed, steps=steps, cfg=cfg,
                           size=size, strength=strength, gradient=gradient, recurrence=recurrence,
                           recurrence_until=recurrence_until, recurrence_above=recurrence_above,
                           recurrence_early=recurrence_early, warmup=warmup,
                           energy=energy, guide_when=guide_when,
                           scheduler=scheduler, attn_layers=attn_layers, layer_span=layer_span,
                           tokens=tokens or {}, features=features, sources=sources, eta=eta,
                           checkpointing=checkpointing, loss_scale=loss_scale, progress=progress,
                           keep_steps=keep_steps, cache_sources=cache_sources, feature_prompt=feature_prompt,
                           start_latents=start_latents, observe=observe, prompt_span=prompt_span,
                           computed_when=computed_when)
        return sampler.run()
    except RuntimeError as exc:
        converted = out_of_memory_error(exc)
        if converted is None:
            raise
        raise converted from None
