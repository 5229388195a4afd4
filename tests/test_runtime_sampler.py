"""The guided sampling loop: equality with diffusers, guidance lowers the energy, sources,
caching, schedulers, the NaN guard, SDXL."""

import copy

import pytest
import torch

from sgl.diagnostics import SGLError
from sgl.runtime.sampler import (SELF, EnergyOut, SourceSpec, StepInfo, in_windows, renoise, sample, to_model_output,
                                 unit_rms)

PROMPT = "a photo of a dog and a cat"
STEPS = 3


def _pipe_latents(pipe, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, **kw):
    return pipe(prompt, num_inference_steps=steps, guidance_scale=cfg, output_type="latent",
                generator=torch.Generator().manual_seed(seed), **kw).images


def centroid_x(attn):
    """Attention centroid x in [0, 1] per row of a [B, H, W] map."""
    width = attn.shape[-1]
    xs = (torch.arange(width, dtype=attn.dtype) + 0.5) / width
    return (attn.sum(1) * xs).sum(-1) / attn.sum((1, 2))


def push_dog_right(step, recorded):
    cx = centroid_x(recorded[SELF].attn["dog"])
    return EnergyOut(total=1.0 - cx, terms={"dog.x": float(cx.detach().mean())})


def test_strength_zero_equals_the_pipeline(tiny_sd):
    reference = _pipe_latents(tiny_sd)
    plain = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5)
    assert torch.equal(plain.latents, reference)
    unguided = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, strength=0.0,
                      energy=push_dog_right, tokens={"dog": "dog"})
    assert torch.equal(unguided.latents, reference)
    assert plain.image.size == (32, 32)


def test_sources_equal_their_own_pipeline_runs(tiny_sd):
    result = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5,
                    sources=[SourceSpec("orig", PROMPT, tokens={"dog": "dog"}, features=["default"]),
                             SourceSpec("ref", "a red car", seed=5, tokens={"car": "car"})])
    # batch composition changes float rounding a little, nothing more
    assert (result.latents - _pipe_latents(tiny_sd)).abs().max() < 1e-4
    assert (result.sources["orig"].latents - _pipe_latents(tiny_sd)).abs().max() < 1e-4
    assert (result.sources["ref"].latents - _pipe_latents(tiny_sd, "a red car", seed=5)).abs().max() < 1e-4
    assert set(result.sources) == {"orig", "ref"}


def test_guidance_lowers_the_energy_and_is_deterministic(tiny_sd):
    unguided = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, keep_steps=[STEPS - 1],
                      tokens={"dog": "dog"}, energy=push_dog_right, strength=0.0, observe=True)
    assert not any(s.guided for s in unguided.trace) and all(s.total is not None for s in unguided.trace)
    assert (unguided.latents - _pipe_latents(tiny_sd)).abs().max() < 1e-4
    kwargs = dict(prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, strength=3e4, energy=push_dog_right,
                  tokens={"dog": "dog"}, keep_steps=[STEPS - 1])
    guided = sample(tiny_sd, **kwargs)
    again = sample(tiny_sd, **kwargs)
    assert torch.equal(guided.latents, again.latents)
    assert all(s.guided and s.grad_norm > 0 for s in guided.trace)
    x_guided = [s.terms["dog.x"] for s in guided.trace]
    assert x_guided[-1] > x_guided[0]
    # the final attention of the guided run vs the unguided one (same seed)
    assert guided.trace[-1].total < unguided.trace[-1].total
    final = guided.kept[STEPS - 1][SELF].attn["dog"]
    final_unguided = unguided.kept[STEPS - 1][SELF].attn["dog"]
    assert float(1 - centroid_x(final)) < float(1 - centroid_x(final_unguided))
    assert final.shape == (1, 16, 16) and final.device.type == "cpu"


def test_energy_sees_every_source_and_none_skips_the_gradient(tiny_sd):
    seen = []

    def energy(step, recorded):
        seen.append((step.index, sorted(recorded), step.sigma, step.fraction))
        if step.index == 1:
            return None
        diff = recorded[SELF].attn["dog"] - recorded["orig"].attn["dog"]
        feat = recorded[SELF].feats["up_blocks.0"] - recorded["orig"].feats["up_blocks.0"]
        return EnergyOut(diff.abs().mean() + feat.abs().mean(), {"keep": 0.0})

    result = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, strength=10.0, energy=energy,
                    tokens={"dog": "dog"}, features=["default"],
                    sources=[SourceSpec("orig", PROMPT, tokens={"dog": "dog"}, features=["default"])])
    assert [s[1] for s in seen] == [["orig", SELF]] * STEPS
    assert seen[0][2] > seen[-1][2] > 0 and [s[3] for s in seen] == [0, 1 / 3, 2 / 3]
    assert [s.guided for s in result.trace] == [True, False, True]
    assert result.trace[1].grad_norm is None


def test_guide_when_skips_steps_without_calling_energy(tiny_sd):
    calls = []
    result = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, strength=100.0,
                    energy=lambda s, r: calls.append(s.index) or push_dog_right(s, r),
                    guide_when=lambda s: s.fraction < 0.5, tokens={"dog": "dog"})
    assert calls == [0, 1]
    assert [s.guided for s in result.trace] == [True, True, False]


def test_non_finite_gradient_skips_guidance_and_warns(tiny_sd):
    def bad(step, recorded):
        return EnergyOut(recorded[SELF].attn["dog"].sum() * float("nan"))

    result = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, strength=1.0, energy=bad,
                    tokens={"dog": "dog"})
    assert all(s.skipped for s in result.trace)
    assert len(result.warnings) == STEPS and "non-finite" in result.warnings[0]
    assert (result.latents - _pipe_latents(tiny_sd)).abs().max() < 1e-4


def test_cached_source_is_reused_and_gives_the_same_result(tiny_sd):
    def keep_close(step, recorded):
        return EnergyOut((recorded[SELF].attn["dog"] - recorded["orig"].attn["dog"]).pow(2).sum())

    common = dict(prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, strength=50.0, energy=keep_close,
                  tokens={"dog": "dog"})
    first = sample(tiny_sd, cache_sources=True, **common,
                   sources=[SourceSpec("orig", PROMPT, tokens={"dog": "dog"})])
    cached_run = first.sources["orig"]
    assert len(cached_run.recorded) == STEPS and cached_run.recorded[0].attn["dog"].shape == (1, 16, 16)
    calls = []
    original_forward = tiny_sd.unet.forward

    def counting_forward(sample_, *args, **kwargs):
        calls.append(sample_.shape[0])
        return original_forward(sample_, *args, **kwargs)

    tiny_sd.unet.forward = counting_forward
    try:
        second = sample(tiny_sd, **common, sources=[SourceSpec("orig", PROMPT, tokens={"dog": "dog"},
                                                               cached=cached_run)])
    finally:
        del tiny_sd.unet.forward
    assert calls == [1, 1] * STEPS  # guided uncond (no grad), guided cond (grad): orig not rerun
    assert second.sources["orig"] is cached_run
    assert (second.latents - first.latents).abs().max() < 1e-4
    # other settings: the cache does not fit and the source runs again
    third = sample(tiny_sd, **{**common, "seed": 4},
                   sources=[SourceSpec("orig", PROMPT, tokens={"dog": "dog"}, cached=cached_run)])
    assert third.sources["orig"] is not cached_run


def test_unknown_word_and_bad_pattern_are_sgl_errors(tiny_sd):
    with pytest.raises(SGLError) as err:
        sample(tiny_sd, prompt=PROMPT, steps=1, tokens={"dgo": "dgo"})
    assert err.value.diagnostics[0].code == "E201"
    with pytest.raises(SGLError) as err:
        sample(tiny_sd, prompt=PROMPT, steps=1, attn_layers="nothing.*")
    assert err.value.diagnostics[0].code == "E211"


def test_euler_scheduler_runs_and_matches_the_pipeline(tiny_sd):
    from diffusers import EulerDiscreteScheduler

    euler = EulerDiscreteScheduler.from_config(tiny_sd.scheduler.config)
    plain = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, scheduler=euler)
    pipe = copy.copy(tiny_sd)
    pipe.scheduler = EulerDiscreteScheduler.from_config(tiny_sd.scheduler.config)
    assert torch.equal(plain.latents, _pipe_latents(pipe))
    guided = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, scheduler=euler,
                    strength=100.0, energy=push_dog_right, tokens={"dog": "dog"})
    sigmas = [s.sigma for s in guided.trace]
    assert all(0 < s < 1 for s in sigmas) and sigmas == sorted(sigmas, reverse=True)


@pytest.mark.parametrize("name", ["ddpm", "pndm", "euler_a", "dpm"])
def test_other_schedulers_match_the_pipeline_and_guide(tiny_sd, name):
    from sgl.runtime.pipelines import make_scheduler

    pipe = copy.copy(tiny_sd)
    pipe.scheduler = make_scheduler(tiny_sd, name)
    steps = 4  # diffusers' PNDM breaks below 4 steps
    plain = sample(tiny_sd, prompt=PROMPT, seed=3, steps=steps, cfg=7.5, scheduler=make_scheduler(tiny_sd, name))
    assert torch.equal(plain.latents, _pipe_latents(pipe, steps=steps))
    guided = sample(tiny_sd, prompt=PROMPT, seed=3, steps=steps, cfg=7.5, scheduler=make_scheduler(tiny_sd, name),
                    strength=100.0, energy=push_dog_right, tokens={"dog": "dog"})
    assert all(0 < s.sigma < 1 and s.grad_norm > 0 for s in guided.trace)
    assert guided.trace[-1].step == len(guided.trace) - 1 and guided.trace[0].timestep > guided.trace[-1].timestep


def test_gradient_checkpointing_gives_the_same_result(tiny_sd):
    def energy(step, recorded):  # a resnet's output is recomputed inside a checkpointed region
        feats = recorded[SELF].feats["up_blocks.1.resnets.0"]
        return EnergyOut(push_dog_right(step, recorded).total + feats.pow(2).mean())

    common = dict(prompt=PROMPT, seed=3, steps=2, cfg=7.5, strength=3e3, energy=energy,
                  tokens={"dog": "dog"}, features=["up_blocks.1.resnets.0"])
    plain = sample(tiny_sd, **common)
    checkpointed = sample(tiny_sd, checkpointing=True, **common)
    assert not tiny_sd.unet.is_gradient_checkpointing
    assert (plain.latents - checkpointed.latents).abs().max() < 1e-5
    assert plain.trace[0].grad_norm == pytest.approx(checkpointed.trace[0].grad_norm, rel=1e-4)


def test_sdxl_strength_zero_equals_pipeline_and_guided_step_runs(tiny_sdxl):
    reference = _pipe_latents(tiny_sdxl, steps=2)
    plain = sample(tiny_sdxl, prompt=PROMPT, seed=3, steps=2, cfg=7.5)
    assert torch.equal(plain.latents, reference)
    guided = sample(tiny_sdxl, prompt=PROMPT, seed=3, steps=2, cfg=7.5, strength=1e3,
                    energy=push_dog_right, tokens={"dog": "dog"}, features=["default"],
                    sources=[SourceSpec("orig", PROMPT, tokens={"dog": "dog"})])
    assert all(s.guided and s.grad_norm > 0 for s in guided.trace)
    assert not torch.equal(guided.latents, reference)
    assert guided.image.size == (32, 32)


def test_bfloat16_guided_run_stays_finite(tiny_sd):
    pipe = copy.deepcopy(tiny_sd).to(dtype=torch.bfloat16)
    result = sample(pipe, prompt=PROMPT, seed=3, steps=2, cfg=7.5, strength=1e3, energy=push_dog_right,
                    tokens={"dog": "dog"})
    assert torch.isfinite(result.latents.float()).all()
    assert all(s.grad_norm is not None and s.grad_norm > 0 for s in result.trace)


def test_float16_gradient_matches_float32_with_loss_scaling(tiny_sd):
    common = dict(prompt=PROMPT, seed=3, steps=2, cfg=7.5, strength=1e3, energy=push_dog_right,
                  tokens={"dog": "dog"})
    full = sample(tiny_sd, **common)
    half = sample(copy.deepcopy(tiny_sd).to(dtype=torch.float16), **common)
    assert half.latents.dtype == torch.float16 and not half.warnings
    for a, b in zip(full.trace, half.trace):
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=2e-2)


def test_out_of_memory_becomes_e230(tiny_sd, monkeypatch):
    def exhausted(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tiny_sd.unet, "forward", exhausted)
    with pytest.raises(SGLError) as err:
        sample(tiny_sd, prompt=PROMPT, steps=1)
    assert err.value.diagnostics[0].code == "E230"


def test_progress_bar_runs(tiny_sd, capsys):
    sample(tiny_sd, prompt=PROMPT, steps=2, progress=True)
    assert "sampling" in capsys.readouterr().err


def test_in_windows_follows_the_ir_convention():
    when = in_windows([(0.0, 0.25), (0.5, 1.0)])
    active = [when(StepInfo(i, 8, 0.0, 0.5)) for i in range(8)]
    assert active == [True, True, False, False, True, True, True, True]
    assert not in_windows([])(StepInfo(0, 8, 0.0, 0.5))


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_guidance_moves_a_step_the_same_whatever_the_model_predicts(tiny_sd, prediction_type):
    from diffusers import DDIMScheduler

    eps_sched = DDIMScheduler.from_config(tiny_sd.scheduler.config)
    other = DDIMScheduler.from_config(tiny_sd.scheduler.config, prediction_type=prediction_type)
    for sched in (eps_sched, other):
        sched.set_timesteps(4)
    t = eps_sched.timesteps[1]
    alpha_bar = float(eps_sched.alphas_cumprod[int(t)])
    alpha, sigma = alpha_bar ** 0.5, (1 - alpha_bar) ** 0.5
    g = torch.Generator().manual_seed(0)
    z, eps, delta = (torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    x0 = (z - sigma * eps) / alpha
    as_model = {"v_prediction": alpha * eps - sigma * x0, "sample": x0}[prediction_type]
    moved_eps = eps_sched.step(eps + delta, t, z).prev_sample - eps_sched.step(eps, t, z).prev_sample
    shifted = as_model + to_model_output(delta, prediction_type, sigma)
    moved_other = other.step(shifted, t, z).prev_sample - other.step(as_model, t, z).prev_sample
    assert torch.allclose(moved_eps, moved_other, atol=1e-9)


def test_unit_gradient_is_independent_of_the_energy_scale(tiny_sd):
    """gradient "unit": ∇g scaled to unit RMS, so scaling the energy changes nothing, while the
    raw gradient (the paper's v·σ·∇g) follows the scale."""
    def scaled(k):
        return lambda step, rec: EnergyOut(total=k * (1.0 - centroid_x(rec[SELF].attn["dog"])))

    common = dict(prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, tokens={"dog": "dog"})
    unit_1 = sample(tiny_sd, strength=0.5, gradient="unit", energy=scaled(1.0), **common)
    unit_1000 = sample(tiny_sd, strength=0.5, gradient="unit", energy=scaled(1000.0), **common)
    assert (unit_1.latents - unit_1000.latents).abs().max() < 1e-4
    plain = sample(tiny_sd, **common)
    assert (unit_1.latents - plain.latents).abs().max() > 1e-3  # and it does guide
    raw_1 = sample(tiny_sd, strength=0.5, gradient="raw", energy=scaled(1.0), **common)
    raw_1000 = sample(tiny_sd, strength=0.5, gradient="raw", energy=scaled(1000.0), **common)
    assert (raw_1.latents - raw_1000.latents).abs().max() > 1e-3


def test_unit_rms_scales_each_row_and_keeps_zero():
    g = torch.stack([torch.full((4, 2, 2), 3.0), torch.zeros(4, 2, 2)])
    u = unit_rms(g)
    assert torch.allclose(u[0], torch.ones(4, 2, 2)) and torch.equal(u[1], torch.zeros(4, 2, 2))


def test_unknown_gradient_mode_is_an_sgl_error(tiny_sd):
    with pytest.raises(SGLError) as err:
        sample(tiny_sd, prompt=PROMPT, steps=1, strength=1.0, gradient="norm", energy=push_dog_right,
               tokens={"dog": "dog"})
    assert err.value.diagnostics[0].code == "E028"


def _count_unet_calls(pipe):
    calls = []
    handle = pipe.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls, handle


def test_recurrence_retakes_each_guided_step(tiny_sd):
    """`recurrence 3`: every guided step but the last is taken twice more (an uncond no-grad row
    and the guided row each time); deterministic; without guidance nothing changes."""
    common = dict(prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, tokens={"dog": "dog"}, energy=push_dog_right,
                  gradient="unit")
    once = sample(tiny_sd, strength=2.0, **common)
    calls, handle = _count_unet_calls(tiny_sd)
    try:
        thrice = sample(tiny_sd, strength=2.0, recurrence=3, **common)
    finally:
        handle.remove()
    # per step: one no-grad batch + one guided row; plus 2 × (uncond + guided) per re-taken step
    assert len(calls) == 2 * STEPS + 2 * 2 * (STEPS - 1)
    again = sample(tiny_sd, strength=2.0, recurrence=3, **common)
    assert torch.equal(thrice.latents, again.latents)
    assert (thrice.latents - once.latents).abs().max() > 1e-3
    unguided = sample(tiny_sd, strength=0.0, recurrence=3, **common)
    assert torch.equal(unguided.latents, _pipe_latents(tiny_sd))


# four guided steps of a run with `recurrence 3`, for the tests of where steps recur
RECURRING = dict(prompt=PROMPT, seed=3, steps=4, cfg=7.5, tokens={"dog": "dog"}, energy=push_dog_right,
                 gradient="unit", strength=2.0, recurrence=3)


def _sample_counted(pipe, **kwargs):
    """`sample(pipe, **RECURRING, **kwargs)` and the number of UNet calls it made."""
    calls, handle = _count_unet_calls(pipe)
    try:
        result = sample(pipe, **{**RECURRING, **kwargs})
    finally:
        handle.remove()
    return result, len(calls)


def test_recurrence_until_retakes_only_the_first_steps(tiny_sd):
    """`recurrence_until u`: only guided steps i < u·steps are re-taken; at 0 none is, and the
    run is the one without recurrence, draw for draw."""
    half, calls = _sample_counted(tiny_sd, recurrence_until=0.5)
    assert calls == 2 * 4 + 2 * 2 * 2  # steps 0 and 1 of 4 re-taken twice
    full = sample(tiny_sd, **RECURRING)
    assert (half.latents - full.latents).abs().max() > 1e-4
    never = sample(tiny_sd, **{**RECURRING, "recurrence_until": 0.0})
    once = sample(tiny_sd, **{**RECURRING, "recurrence": 1})
    assert torch.equal(never.latents, once.latents)


def test_recurrence_early_takes_the_first_steps_once_more(tiny_sd):
    """`recurrence_early e`: guided steps i < e·steps that recur are taken once more than
    `recurrence` says; over every step that is `recurrence N + 1`, draw for draw; at 0 it is
    `recurrence N`; with `recurrence 1` nothing recurs and it does nothing."""
    half, calls = _sample_counted(tiny_sd, recurrence_early=0.5)
    assert calls == 2 * 4 + 2 * (3 + 3 + 2)  # steps 0, 1 re-taken thrice, step 2 twice
    thrice = sample(tiny_sd, **RECURRING)
    assert (half.latents - thrice.latents).abs().max() > 1e-4
    assert torch.equal(sample(tiny_sd, **{**RECURRING, "recurrence_early": 0.0}).latents, thrice.latents)
    four = sample(tiny_sd, **{**RECURRING, "recurrence": 4})
    assert torch.equal(sample(tiny_sd, **{**RECURRING, "recurrence_early": 1.0}).latents, four.latents)
    once = sample(tiny_sd, **{**RECURRING, "recurrence": 1})
    assert torch.equal(sample(tiny_sd, **{**RECURRING, "recurrence": 1, "recurrence_early": 1.0}).latents,
                       once.latents)


def test_recurrence_above_retakes_only_steps_far_from_met(tiny_sd):
    """`recurrence_above a`: a guided step but the last is re-taken only while its energy is
    above a times the largest first-take energy so far. The count of UNet calls follows that rule
    on the run's own trace; step 0 (its own peak) recurs for any a < 1; a above the smallest
    ratio of the every-step run skips a step; at 1 no step recurs (none is above its own peak),
    the run without recurrence draw for draw; at 0 every step recurs."""
    def to_the_right(step, recorded):  # its one term is the energy, which guidance lowers
        gap = 1.0 - centroid_x(recorded[SELF].attn["dog"])
        return EnergyOut(total=gap, terms={"dog.x": float(gap.detach().sum())})

    steps = 6
    common = dict(prompt=PROMPT, seed=3, steps=steps, cfg=7.5, tokens={"dog": "dog"}, energy=to_the_right,
                  gradient="unit", strength=2.0, recurrence=3)
    every = sample(tiny_sd, **common)

    def ratios(result):
        sizes = [t.size() for t in result.trace]
        return [s / max(sizes[:i + 1]) for i, s in enumerate(sizes)]

    full_ratios = ratios(every)[:-1]
    assert min(full_ratios) < 1.0  # the energy falls below its peak somewhere
    above = (min(full_ratios) + 1.0) / 2
    calls, handle = _count_unet_calls(tiny_sd)
    try:
        some = sample(tiny_sd, recurrence_above=above, **common)
    finally:
        handle.remove()
    retaken = sum(r > above for r in ratios(some)[:-1])
    assert len(calls) == 2 * steps + 2 * 2 * retaken
    assert 1 <= retaken < steps - 1
    assert (some.latents - every.latents).abs().max() > 1e-5
    assert torch.equal(sample(tiny_sd, recurrence_above=0.0, **common).latents, every.latents)
    never = sample(tiny_sd, recurrence_above=1.0, **common)
    once = sample(tiny_sd, **{**common, "recurrence": 1})
    assert torch.equal(never.latents, once.latents)


def test_renoise_carries_the_forward_marginal_from_one_step_to_the_next():
    """z at ᾱ_prev = sqrt(ᾱ_prev)·x0 + sqrt(1 − ᾱ_prev)·ε comes out with mean sqrt(ᾱ_t)·x0 and
    variance 1 − ᾱ_t."""
    gen = torch.Generator().manual_seed(0)
    x0, alpha_t, alpha_prev = 0.8, 0.3, 0.7
    n = 200_000
    z_prev = alpha_prev ** 0.5 * x0 + (1 - alpha_prev) ** 0.5 * torch.randn(n, generator=gen, dtype=torch.float64)
    z_t = renoise(z_prev, alpha_t, alpha_prev, torch.randn(n, generator=gen, dtype=torch.float64))
    assert abs(float(z_t.mean()) - alpha_t ** 0.5 * x0) < 0.01
    assert abs(float(z_t.var()) - (1 - alpha_t)) < 0.01


def test_recurrence_needs_a_stateless_scheduler(tiny_sd):
    from sgl.runtime.pipelines import make_scheduler

    common = dict(prompt=PROMPT, steps=2, strength=1.0, energy=push_dog_right, tokens={"dog": "dog"})
    for name in ("euler", "pndm", "dpm"):
        with pytest.raises(SGLError) as err:
            sample(tiny_sd, scheduler=make_scheduler(tiny_sd, name), recurrence=2, **common)
        assert err.value.diagnostics[0].code == "E231"
    for bad in (0, 1.5, "x"):
        with pytest.raises(SGLError) as err:
            sample(tiny_sd, recurrence=bad, **common)
        assert err.value.diagnostics[0].code == "E231"
    ddpm = sample(tiny_sd, scheduler=make_scheduler(tiny_sd, "ddpm"), recurrence=2, **common)
    assert ddpm.trace[0].guided


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_step_alphas_are_the_ones_the_scheduler_steps_between(tiny_sd, spacing):
    """A DDIM step with the model predicting the true noise of z_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε
    lands on sqrt(ᾱ_prev)·x0 + sqrt(1−ᾱ_prev)·ε for the ᾱ_prev that `step_alphas` names."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from sgl.runtime.sampler import step_alphas

    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 4, 4, generator=gen), torch.randn(1, 4, 4, 4, generator=gen)
    for cls in (DDIMScheduler, DDPMScheduler):
        sched = cls.from_config(tiny_sd.scheduler.config, timestep_spacing=spacing)
        sched.set_timesteps(7)
        for t in sched.timesteps:
            a_t, a_prev = step_alphas(sched, t)
            z = a_t ** 0.5 * x0 + (1 - a_t) ** 0.5 * eps
            if cls is DDIMScheduler:
                moved = sched.step(eps, t, z, eta=0.0).prev_sample
                assert torch.allclose(moved, a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps, atol=1e-4)
            else:  # DDPM's posterior mean, at the same two alphas
                assert 0 < a_t <= a_prev <= 1


def _features_seen(pipe, feature_prompt="guided", **kwargs):
    """The `ref` and guided features the energy saw at each step."""
    seen = []

    def energy(step, recorded):
        seen.append((recorded["ref"].feats["up_blocks.0"].clone(), recorded[SELF].feats["up_blocks.0"].detach().clone(),
                     dict(recorded["ref"].attn)))
        return EnergyOut((recorded[SELF].feats["up_blocks.0"] - recorded["ref"].feats["up_blocks.0"]).abs().mean())

    result = sample(pipe, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, strength=10.0, energy=energy,
                    features=["default"], feature_prompt=feature_prompt, **kwargs)
    return seen, result


def test_a_reference_with_another_prompt_has_its_features_read_under_the_guided_prompt(tiny_sd):
    """Same seed, other prompt: at step 0 the reference's latent is the guided run's, so under
    the guided prompt its features are the guided row's own; under its own prompt they differ
    (the text moves the features). Its attention still comes from its own prompt's words."""
    ref = SourceSpec("ref", "a red car and a dog", seed=3, tokens={"car": "car"}, features=["default"])
    under_guided, result = _features_seen(tiny_sd, sources=[ref])
    under_own, _ = _features_seen(tiny_sd, "own", sources=[ref])
    ref_feat, self_feat, attn = under_guided[0]
    assert (ref_feat - self_feat).abs().max() < 1e-4
    own_feat = under_own[0][0]
    assert (own_feat - self_feat).abs().max() > 100 * (ref_feat - self_feat).abs().max()
    # the same attention, batched with other rows: equal up to fp32 summation order
    assert set(attn) == {"car"} and torch.allclose(attn["car"], under_own[0][2]["car"], rtol=1e-5, atol=1e-7)
    # the reference itself samples as before: the extra row only reads features
    assert (result.sources["ref"].latents - _pipe_latents(tiny_sd, "a red car and a dog", seed=3)).abs().max() < 1e-4


def test_a_cached_reference_reads_its_features_under_the_new_guided_prompt(tiny_sd):
    """The cache keeps a run's own-prompt features and its model inputs: a later program with
    another prompt reads the features under its own prompt from them, without sampling the
    reference again, and sees what an uncached run sees."""
    other = "a red car and a dog"
    first = sample(tiny_sd, prompt=other, seed=5, steps=STEPS, cfg=7.5, cache_sources=True,
                   sources=[SourceSpec("orig", other, seed=5, tokens={"car": "car"}, features=["default"])])
    cached = first.sources["orig"]
    assert len(cached.inputs) == STEPS
    spec = dict(name="ref", prompt=other, seed=5, tokens={"car": "car"}, features=["default"])
    fresh, _ = _features_seen(tiny_sd, sources=[SourceSpec(**spec)])
    reused, result = _features_seen(tiny_sd, sources=[SourceSpec(**spec, cached=cached)])
    assert result.sources["ref"].recorded is cached.recorded
    for (f_ref, _, f_attn), (r_ref, _, r_attn) in zip(fresh, reused):
        assert (f_ref - r_ref).abs().max() < 1e-4
        assert (f_attn["car"] - r_attn["car"]).abs().max() < 1e-5
    # what the cache holds stays under the run's own prompt
    assert (cached.recorded[1].feats["up_blocks.0"] - fresh[1][0]).abs().max() > 1e-3


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_clean_latent_inverts_the_forward_process(prediction_type):
    from sgl.runtime.sampler import clean_latent

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    alpha = 0.3
    z = alpha ** 0.5 * x0 + (1 - alpha) ** 0.5 * eps
    output = {"epsilon": eps, "v_prediction": alpha ** 0.5 * eps - (1 - alpha) ** 0.5 * x0, "sample": x0}[prediction_type]
    assert torch.allclose(clean_latent(z, output, alpha, prediction_type), x0, atol=1e-5)


def test_latent_is_the_estimate_the_ddim_step_moves_towards(tiny_sd):
    """`latent()` of a source, checked against the scheduler itself: without CFG a DDIM step is
    z' = √ᾱ'·x̂₀ + √(1 − ᾱ')·ε̂ with ε̂ = (z − √ᾱ·x̂₀)/√(1 − ᾱ), so consecutive model inputs give
    x̂₀ back without the formula under test. The guided row's x̂₀ carries a gradient (the recorder
    does not cut autograd before the UNet's output) and guidance lowers its energy."""
    from sgl.ir.ops import LATENT
    from sgl.runtime.sampler import step_alphas

    seen, differentiable = [], []

    def energy(step, recorded):
        seen.append(recorded["orig"].feats[LATENT].clone())
        x0 = recorded[SELF].feats[LATENT]
        differentiable.append(x0.requires_grad)
        return EnergyOut((x0 - 1.0).abs().mean(), {"x0": float((x0 - 1.0).abs().mean().detach())})

    steps = 4
    result = sample(tiny_sd, prompt=PROMPT, seed=3, steps=steps, cfg=1.0, strength=3.0, gradient="unit",
                    energy=energy, features=[LATENT], cache_sources=True,
                    sources=[SourceSpec("orig", PROMPT, features=[LATENT])])
    assert differentiable == [True] * steps
    inputs = result.sources["orig"].inputs
    sched = copy.deepcopy(tiny_sd.scheduler)
    sched.set_timesteps(steps)
    for i in range(steps - 1):
        a, a_prev = step_alphas(sched, sched.timesteps[i])
        c = ((1 - a_prev) / (1 - a)) ** 0.5
        x0 = (inputs[i + 1] - c * inputs[i]) / (a_prev ** 0.5 - c * a ** 0.5)
        assert (seen[i] - x0).abs().max() < 1e-3 * (1 + x0.abs().max())
    unguided = sample(tiny_sd, prompt=PROMPT, seed=3, steps=steps, cfg=1.0, energy=energy, strength=0.0,
                      features=[LATENT], observe=True, sources=[SourceSpec("orig", PROMPT, features=[LATENT])])
    assert result.trace[-1].terms["x0"] < unguided.trace[-1].terms["x0"]


def test_pixels_are_the_decoded_clean_latent_and_carry_a_gradient(tiny_sd):
    """`pixels()` is x̂₀ decoded by the pipeline's VAE (the same decode as the final image, in
    [0, 1] instead of [−1, 1]), for the guided row with a gradient back to the latents, and for a
    source without one; guidance on it lowers its energy."""
    from sgl.ir.ops import LATENT, PIXELS
    from sgl.runtime.sampler import decode_pixels

    pairs, differentiable = [], []

    def energy(step, recorded):
        orig = recorded["orig"].feats
        pairs.append((orig[LATENT].clone(), orig[PIXELS].clone()))
        picture = recorded[SELF].feats[PIXELS]
        differentiable.append(picture.requires_grad)
        value = (picture - 1.0).abs().mean()
        return EnergyOut(value, {"white": float(value.detach())})

    steps = 4
    kw = dict(prompt=PROMPT, seed=3, steps=steps, cfg=1.0, gradient="unit", energy=energy,
              features=[PIXELS], sources=[SourceSpec("orig", PROMPT, features=[LATENT, PIXELS])])
    guided = sample(tiny_sd, strength=3.0, **kw)
    assert differentiable == [True] * steps
    for x0, picture in pairs:
        f = tiny_sd.vae_scale_factor
        assert picture.shape[1] == 3 and picture.shape[-2:] == (f * x0.shape[-2], f * x0.shape[-1])
        with torch.no_grad():
            assert torch.allclose(picture, decode_pixels(tiny_sd.vae, x0), atol=1e-5)
    pairs.clear()
    unguided = sample(tiny_sd, strength=0.0, observe=True, **kw)
    assert guided.trace[-1].terms["white"] < unguided.trace[-1].terms["white"]


def test_a_picture_is_decoded_only_at_the_steps_that_read_it(tiny_sd, monkeypatch):
    """`computed_when` (a pixel term's window, from the IR's `feature_windows`): the guided
    row's x̂₀ is decoded, with its backward, only at those steps; at the others the energy sees
    x̂₀ but no picture, and nothing is decoded for it."""
    from sgl.ir.ops import LATENT, PIXELS
    from sgl.runtime import sampler as sampler_module

    decoded, seen = [], []
    real_decode = sampler_module.decode_pixels

    def counting_decode(vae, latents):
        decoded.append(latents.requires_grad)
        return real_decode(vae, latents)

    monkeypatch.setattr(sampler_module, "decode_pixels", counting_decode)

    def energy(step, recorded):
        feats = recorded[SELF].feats
        seen.append((step.index, PIXELS in feats, LATENT in feats))
        value = (feats[PIXELS] - 1.0).abs().mean() if PIXELS in feats else feats[LATENT].abs().mean()
        return EnergyOut(value, {"e": float(value.detach())})

    steps = 6
    sample(tiny_sd, prompt=PROMPT, seed=3, steps=steps, cfg=1.0, strength=3.0, gradient="unit", energy=energy,
           features=[LATENT, PIXELS], computed_when={PIXELS: lambda step: step.index < 2})
    assert seen == [(i, i < 2, True) for i in range(steps)]
    assert decoded == [True, True, False]  # steps 0 and 1 with a gradient, then the final image


@pytest.mark.parametrize("bad", [{"recurrence_until": 1.5}, {"recurrence_above": -0.1}, {"recurrence_early": 1.2},
                                 {"warmup": 2.0}])
def test_sample_rejects_fractions_outside_zero_to_one(tiny_sd, bad):
    """Called directly, `sample` checks the range that a program's settings are checked against
    (as it checks `recurrence`: test_recurrence_needs_a_stateless_scheduler)."""
    with pytest.raises(SGLError) as err:
        sample(tiny_sd, prompt=PROMPT, steps=2, **bad)
    assert err.value.diagnostics[0].code == "E231" and next(iter(bad)) in err.value.diagnostics[0].message
