"""The evaluator as the sampler's energy callback, on the tiny random SD pipeline: recorded
attention and features reach the IR, guidance is applied only inside the terms' windows."""

from __future__ import annotations

import torch

from sgl.bench.energy import CoreIR
from sgl.runtime.evaluate import EnergyCallback, Evaluator, inputs_from_recorded, term_names
from sgl.runtime.hooks import Recorded

DOG, CAT = ("dog",), ("cat",)


def test_inputs_from_recorded_maps_feature_layers():
    rec = Recorded({DOG: torch.rand(1, 4, 4)}, {"up_blocks.1": torch.rand(1, 3, 4, 4)})
    inputs = inputs_from_recorded({"self": rec, "orig": rec}, {"default": "up_blocks.1"})
    assert inputs.attn[("orig", DOG)] is rec.attn[DOG]
    assert inputs.feats[("self", "default")] is rec.feats["up_blocks.1"]
    assert inputs.feats[("self", "up_blocks.1")] is rec.feats["up_blocks.1"]


def test_term_names_are_unique():
    ir = CoreIR()
    terms = [ir.term(ir.size(DOG), label="keep(o)"), ir.term(ir.size(CAT), label="keep(o)"),
             ir.term(ir.size(CAT), label="size(cat) = 0.3")]
    assert term_names(terms) == ["keep(o) #1", "keep(o) #2", "size(cat) = 0.3"]


def test_guided_sampling_with_the_evaluator(tiny_sd):
    from sgl.runtime.pipelines import model_info
    from sgl.runtime.profiles import resolve_feature_layers
    from sgl.runtime.sampler import SourceSpec, sample

    ir = CoreIR()
    terms = [ir.term(ir.l1(ir.centroid(DOG), ir.vec(0.9, 0.5)), weight=5.0, window=(0.0, 0.5),
                     label="centroid(dog) = (0.9, 0.5)"),
             ir.term(ir.l1(ir.appearance(CAT), ir.appearance(CAT, "orig")), window=(0.0, 0.5),
                     label="appearance(cat) = appearance₀(cat)"),
             ir.term(ir.l1(ir.size(CAT), ir.size(CAT, "orig")), window=(0.0, 0.5), label="size(cat) = size₀(cat)")]
    info = model_info(tiny_sd)
    (layer,) = resolve_feature_layers(tiny_sd.unet, ["default"], info.profile)
    latent = tiny_sd.unet.config.sample_size
    evaluator = Evaluator(terms, grid=(latent, latent))
    energy = EnergyCallback(evaluator, {"default": layer})
    tokens = {DOG: "dog", CAT: "cat"}
    prompt = "a photo of a dog and a cat"
    common = dict(prompt=prompt, seed=3, steps=2, cfg=5.0,
                  tokens=tokens, features=["default"])
    orig = SourceSpec("orig", prompt=prompt, seed=3, tokens=tokens, features=["default"])
    guided = sample(tiny_sd, strength=50.0, energy=energy, sources=[orig], **common)

    traced = [s for s in guided.trace if s.guided]
    assert [s.step for s in traced] == [0]  # windows 0–50% of 2 steps
    for record in traced:
        assert set(record.terms) == set(term_names(terms))
        assert record.grad_norm is not None and record.grad_norm > 0
    plain = guided.sources["orig"].latents  # the unguided run: same prompt and seed
    assert not torch.allclose(guided.latents, plain)
