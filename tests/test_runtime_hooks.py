"""The watching attention processor and the Recorder."""

import copy

import pytest
import torch

from sgl.diagnostics import SGLError
from sgl.runtime.attention import WatchingProcessor, explicit_attention
from sgl.runtime.hooks import Recorder, SourceRows, infer_hw
from sgl.runtime.profiles import cross_attention_layers, default_profile

LATENT = (16, 16)


@pytest.fixture(scope="module")
def unet64(tiny_sd):
    return copy.deepcopy(tiny_sd.unet).double()


def _inputs(batch=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, *LATENT, generator=g, dtype=dtype)
    emb = torch.randn(batch, 77, 32, generator=g, dtype=dtype)
    return x, torch.tensor(500), emb


def test_processor_output_equals_default_in_float64(unet64):
    x, t, emb = _inputs()
    reference = unet64(x, t, emb).sample
    layers = cross_attention_layers(unet64)  # every cross-attention layer takes the explicit path
    with Recorder(unet64, layers) as rec:
        rec.expect([SourceRows("orig", [0, 1], {"dog": [5]})], LATENT)
        out = unet64(x, t, emb).sample
        recorded = rec.collect()
    assert (out - reference).abs().max().item() < 1e-10
    assert recorded["orig"].attn["dog"].shape == (2, 16, 16)


def test_explicit_attention_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(1, 2, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(1, 2, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)

    def probe(q, k, v):
        out, probs = explicit_attention(q, k, v, 3 ** -0.5)
        return out, probs[..., 1:3]

    assert torch.autograd.gradcheck(probe, (q, k, v))


def test_recorded_maps_have_expected_shapes_and_only_requested_content(tiny_sd):
    unet = tiny_sd.unet
    profile = default_profile(unet, "sd")
    x, t, emb = _inputs(batch=3, dtype=torch.float32)
    with Recorder(unet, profile.attn_layers, [profile.feature_layer]) as rec:
        rec.expect([SourceRows("orig", [1], {"dog": [5], ("red", "car"): [8, 9]}, [profile.feature_layer]),
                    SourceRows("ref", [2], {"cat": [3]})], LATENT)
        with torch.no_grad():
            unet(x, t, emb)
        stored_layers = set(rec._attn_store["orig"])
        recorded = rec.collect()
    assert stored_layers == set(profile.attn_layers)
    assert set(recorded) == {"orig", "ref"}
    assert set(recorded["orig"].attn) == {"dog", ("red", "car")}
    assert recorded["orig"].attn["dog"].shape == (1, 16, 16)
    assert recorded["orig"].attn["dog"].dtype == torch.float32
    assert recorded["orig"].feats[profile.feature_layer].shape == (1, 64, 16, 16)
    assert recorded["ref"].feats == {}
    # a phrase map is the sum of its words' maps; all maps are probabilities
    with Recorder(unet, profile.attn_layers) as rec:
        rec.expect([SourceRows("orig", [1], {"red": [8], "car": [9]})], LATENT)
        with torch.no_grad():
            unet(x, t, emb)
        single = rec.collect()["orig"].attn
    assert torch.allclose(single["red"] + single["car"], recorded["orig"].attn[("red", "car")], atol=1e-6)
    assert single["red"].min() >= 0 and single["red"].max() <= 1


def test_rows_are_selected(unet64):
    x, t, emb = _inputs(batch=2)
    layers = default_profile(unet64, "sd").attn_layers
    with Recorder(unet64, layers) as rec:
        rec.expect([SourceRows("both", [0, 1], {"w": [4]})], LATENT)
        unet64(x, t, emb)
        both = rec.collect()["both"].attn["w"]
        rec.expect([SourceRows("second", [1], {"w": [4]})], LATENT)
        unet64(x, t, emb)
        second = rec.collect()["second"].attn["w"]
    assert torch.equal(both[1:], second)


def test_maps_are_averaged_over_layers_at_the_largest_resolution(unet64):
    x, t, emb = _inputs(batch=1)
    low = "up_blocks.0.attentions.0.transformer_blocks.0.attn2"    # 8 x 8
    high = "up_blocks.1.attentions.0.transformer_blocks.0.attn2"   # 16 x 16
    maps = {}
    for layers in ([low], [high], [low, high]):
        with Recorder(unet64, layers) as rec:
            rec.expect([SourceRows("s", [0], {"w": [2]})], LATENT)
            unet64(x, t, emb)
            maps[len(layers), layers[0]] = rec.collect()["s"].attn["w"]
    assert maps[1, low].shape == (1, 8, 8)
    up = torch.nn.functional.interpolate(maps[1, low][:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(maps[2, low], (up + maps[1, high]) / 2, atol=1e-12)


def test_plain_output_bitwise_unchanged_and_processors_restored(tiny_sd):
    unet = tiny_sd.unet
    before = dict(unet.attn_processors)
    x, t, emb = _inputs(batch=2, dtype=torch.float32)
    with torch.no_grad():
        reference = unet(x, t, emb).sample
    profile = default_profile(unet, "sd")
    with Recorder(unet, profile.attn_layers, [profile.feature_layer]) as rec:
        assert isinstance(unet.attn_processors[profile.attn_layers[0] + ".processor"], WatchingProcessor)
        rec.expect([SourceRows("s", [1], {"dog": [5]}, [profile.feature_layer])], LATENT)
        unet(x, t, emb)
        rec.collect()
    after = dict(unet.attn_processors)
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)
    assert not any(m._forward_hooks for m in unet.modules())
    assert not any("forward" in vars(m) for m in unet.modules())  # the class's forward again
    with torch.no_grad():
        assert torch.equal(unet(x, t, emb).sample, reference)


def test_nothing_expected_takes_the_fast_path(tiny_sd):
    unet = tiny_sd.unet
    x, t, emb = _inputs(batch=2, dtype=torch.float32)
    with torch.no_grad():
        reference = unet(x, t, emb).sample
        with Recorder(unet, default_profile(unet, "sd").attn_layers) as rec:
            rec.expect([], LATENT)
            assert not rec.explicit
            assert torch.equal(unet(x, t, emb).sample, reference)
            assert rec.collect() == {}


def test_attention_modules_skip_the_signature_check_only_while_open(tiny_sd, monkeypatch):
    """Inside a Recorder no attention forward calls `inspect.signature` (diffusers' check of
    cross_attention_kwargs, a few % of a small UNet's call), with the same output; keyword
    arguments still go through the class's forward; after exit the class's forward (and its
    check) is back."""
    import inspect

    unet = tiny_sd.unet
    x, t, emb = _inputs(batch=2, dtype=torch.float32)
    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda *a, **k: calls.append(a) or real(*a, **k))
    with torch.no_grad():
        reference = unet(x, t, emb).sample
        assert calls
        calls.clear()
        with Recorder(unet, default_profile(unet, "sd").attn_layers) as rec:
            rec.expect([], LATENT)
            assert torch.equal(unet(x, t, emb).sample, reference)
            assert not calls
            module = next(m for m in unet.modules() if "forward" in vars(m))
            h = torch.randn(1, 4, module.query_dim)
            assert torch.equal(module(h, scale_unused=1.0), module.processor(module, h))
            assert calls  # the keyword went through the class's forward
            rec.collect()
        calls.clear()
        unet(x, t, emb)
        assert calls


def test_cut_autograd_gives_the_same_gradient(tiny_sd):
    unet = tiny_sd.unet
    layers = ["up_blocks.0.attentions.0.transformer_blocks.0.attn2"]  # early: most of the UNet is after it
    x, t, emb = _inputs(batch=1, dtype=torch.float32)
    grads = []
    for cut in (False, True):
        z = x.clone().requires_grad_(True)
        with Recorder(unet, layers, cut_autograd=cut) as rec:
            rec.expect([SourceRows("self", [0], {"dog": [5]})], LATENT)
            with torch.enable_grad():
                with rec.forward_scope():
                    out = unet(z, t, emb).sample
                    assert torch.is_grad_enabled() != cut
                assert torch.is_grad_enabled()  # the scope gives grad mode back
            assert out.requires_grad != cut
            energy = rec.collect()["self"].attn["dog"].pow(2).sum()
            grads.append(torch.autograd.grad(energy, z)[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-7) and grads[0].abs().sum() > 0


def test_unsupported_processor_is_an_sgl_error(tiny_sd):
    from diffusers.models.attention_processor import AttnProcessor2_0

    class Custom(AttnProcessor2_0):
        pass

    unet = tiny_sd.unet
    name = default_profile(unet, "sd").attn_layers[0]
    module = dict(unet.named_modules())[name]
    original = module.processor
    module.set_processor(Custom())
    try:
        with pytest.raises(SGLError) as err:
            with Recorder(unet, [name]):
                pass
        assert err.value.diagnostics[0].code == "E213"
    finally:
        module.set_processor(original)


def test_infer_hw_handles_non_square_and_odd_latents():
    assert infer_hw(12 * 20, (24, 40)) == (12, 20)
    assert infer_hw(3 * 5, (9, 17)) == (3, 5)  # ceil halving: 9 → 5 → 3, 17 → 9 → 5
    assert infer_hw(64, (8, 8)) == (8, 8)
