"""Default layers per family, the fallback rules, and `layers "…"` patterns."""

import pytest

from sgl.diagnostics import SGLError
from sgl.runtime.profiles import (cross_attention_layers, default_profile, resolve_feature_layers,
                                  select_attention_layers)


def _unet(**kw):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                norm_num_groups=4, **kw)


def test_tiny_sd_uses_rules(tiny_sd):
    profile = default_profile(tiny_sd.unet, "sd")
    assert profile.source == "rules"
    assert profile.attn_layers == ("up_blocks.1.attentions.0.transformer_blocks.0.attn2",
                                   "up_blocks.1.attentions.1.transformer_blocks.0.attn2")
    assert profile.feature_layer == "up_blocks.0"


def test_tiny_sdxl_rules_pick_its_only_cross_attention_up_block(tiny_sdxl):
    profile = default_profile(tiny_sdxl.unet, "sdxl")
    assert all(n.startswith("up_blocks.0.") and n.endswith("attn2") for n in profile.attn_layers)
    assert len(profile.attn_layers) == 4


def test_sd_layout_gets_sd_defaults():
    unet = _unet(block_out_channels=(8, 8, 8, 8), cross_attention_dim=8, attention_head_dim=2,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    profile = default_profile(unet, "sd")
    assert profile.source == "sd1/2 defaults"
    assert {n.split(".")[1] for n in profile.attn_layers} == {"1", "2"}
    assert profile.feature_layer == "up_blocks.3.resnets.0"  # layers_per_block 1 → 2 resnets


def test_sdxl_layout_gets_sdxl_defaults():
    unet = _unet(block_out_channels=(8, 8, 8), cross_attention_dim=8, attention_head_dim=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 1, 4))
    profile = default_profile(unet, "sdxl")
    assert profile.source == "sdxl defaults"
    assert profile.attn_layers == tuple(f"up_blocks.0.attentions.1.transformer_blocks.{k}.attn2" for k in (1, 2, 3))
    assert profile.feature_layer == "up_blocks.2"


def test_pattern_globs_and_prefixes(tiny_sd):
    profile = default_profile(tiny_sd.unet, "sd")
    glob = select_attention_layers(tiny_sd.unet, "up_blocks.0.*attn2", profile)
    prefix = select_attention_layers(tiny_sd.unet, "up_blocks.0", profile)
    assert glob == prefix and len(glob) == 2
    both = select_attention_layers(tiny_sd.unet, "mid_block, down_blocks.0", profile)
    assert [n.split(".")[0] for n in both] == ["down_blocks", "mid_block"]
    assert set(both) <= set(cross_attention_layers(tiny_sd.unet))
    assert select_attention_layers(tiny_sd.unet, None, profile) == profile.attn_layers


def test_pattern_matching_nothing_is_e211(tiny_sd):
    profile = default_profile(tiny_sd.unet, "sd")
    with pytest.raises(SGLError) as err:
        select_attention_layers(tiny_sd.unet, "up_blocks.7.*", profile)
    assert err.value.diagnostics[0].code == "E211"
    with pytest.raises(SGLError):  # self-attention is never watched
        select_attention_layers(tiny_sd.unet, "*attn1", profile)


def test_feature_layers_resolve_default_and_reject_unknown(tiny_sd):
    profile = default_profile(tiny_sd.unet, "sd")
    assert resolve_feature_layers(tiny_sd.unet, ["default", "up_blocks.1"], profile) == ("up_blocks.0", "up_blocks.1")
    with pytest.raises(SGLError) as err:
        resolve_feature_layers(tiny_sd.unet, ["up_blocks.9"], profile)
    assert err.value.diagnostics[0].code == "E212"
