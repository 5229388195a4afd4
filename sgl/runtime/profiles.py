"""Which UNet layers self-guidance reads, per model family.

Attention maps and features are only meaningful from some layers (RESEARCH.md: SD 1.x localises
best in `up_blocks.1/2` cross-attention, SDXL in `up_blocks.0.attentions.1`; appearance features
come from a late decoder layer). Real architectures get the layers public ports used; any other
UNet (tiny test models, the embedded `shapes` model) gets a rule that works for every
UNet2DConditionModel: the cross-attention layers of the highest-resolution up block that has
them, and the output of the second-to-last up block as features. A program's `layers "…"`
setting overrides the attention layers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from sgl.diagnostics import SGLError, Span
from sgl.ir.ops import COMPUTED

# Architectures are recognised by their block layout (not channel counts), so that a small
# model with SD's or SDXL's layout gets the same layers as the real one.
SD_DOWN = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
SD_UP = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
SDXL_DOWN = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
SDXL_UP = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")


@dataclass(frozen=True)
class Profile:
    """Default layers of one UNet: `attn_layers` are module names of cross-attention
    (`…attn2`) modules, `feature_layer` the module whose output is `feat()`."""

    family: str
    attn_layers: tuple[str, ...]
    feature_layer: str
    source: str  # "sd1/2 defaults", "sdxl defaults" or "rules" (for messages and reports)


def cross_attention_layers(unet) -> list[str]:
    """Names of every cross-attention module of the UNet, in module order."""
    return [name for name, module in unet.named_modules()
            if getattr(module, "is_cross_attention", False) and hasattr(module, "set_processor")]


def _up_block_has_cross_attention(unet, index: int) -> bool:
    prefix = f"up_blocks.{index}."
    return any(name.startswith(prefix) for name in cross_attention_layers(unet))


def _layout(unet) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(getattr(unet.config, "down_block_types", ())), tuple(getattr(unet.config, "up_block_types", ()))


def _sd_profile(unet) -> Profile | None:
    if _layout(unet) != (SD_DOWN, SD_UP):
        return None
    layers = tuple(n for n in cross_attention_layers(unet)
                   if n.startswith(("up_blocks.1.", "up_blocks.2.")))
    last = unet.up_blocks[-1]
    if not layers or len(getattr(last, "resnets", ())) < 2:
        return None
    return Profile("sd", layers, f"up_blocks.{len(unet.up_blocks) - 1}.resnets.{len(last.resnets) - 2}",
                   "sd1/2 defaults")


def _sdxl_profile(unet) -> Profile | None:
    if _layout(unet) != (SDXL_DOWN, SDXL_UP):
        return None
    wanted = {f"up_blocks.0.attentions.1.transformer_blocks.{k}.attn2" for k in (1, 2, 3)}
    layers = tuple(n for n in cross_attention_layers(unet) if n in wanted)
    if len(layers) != len(wanted):
        return None
    return Profile("sdxl", layers, "up_blocks.2", "sdxl defaults")


def _rule_profile(unet, family: str) -> Profile:
    """Highest-resolution up block with cross-attention: up blocks run from low to high
    resolution, so that is the last one that has any."""
    with_cross = [i for i in range(len(unet.up_blocks)) if _up_block_has_cross_attention(unet, i)]
    if with_cross:
        prefix = f"up_blocks.{with_cross[-1]}."
        layers = tuple(n for n in cross_attention_layers(unet) if n.startswith(prefix))
    else:
        layers = tuple(cross_attention_layers(unet))
    if not layers:
        raise SGLError.single("E210", "the model's UNet has no cross-attention layers",
                              hint="self-guidance reads cross-attention maps; use a text-conditioned UNet")
    feature_index = max(len(unet.up_blocks) - 2, 0)
    return Profile(family, layers, f"up_blocks.{feature_index}", "rules")


def default_profile(unet, family: str) -> Profile:
    """The profile of a family when the UNet has that family's architecture, else the rules."""
    known = {"sd": _sd_profile, "sdxl": _sdxl_profile}.get(family)
    return (known(unet) if known else None) or _rule_profile(unet, family)


def select_attention_layers(unet, pattern: str | None, profile: Profile, *,
                            span: Span | None = None) -> tuple[str, ...]:
    """The cross-attention layers a `layers "…"` pattern names: a comma-separated list of
    globs (`up_blocks.1.*attn2`) or module-name prefixes (`up_blocks.1`). None = the profile's."""
    if pattern is None or not pattern.strip():
        return profile.attn_layers
    items = [p.strip() for p in pattern.split(",") if p.strip()]
    names = cross_attention_layers(unet)
    chosen = tuple(n for n in names
                   if any(fnmatch.fnmatchcase(n, p) or n.startswith(p.rstrip(".") + ".") for p in items))
    if not chosen:
        examples = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        raise SGLError.single(
            "E211", f"the layer pattern {pattern!r} matches no cross-attention layer", span,
            hint="use globs or prefixes of cross-attention module names, comma-separated",
            notes=(f"this model has {len(names)} cross-attention layers: {examples}",))
    return chosen


def resolve_feature_layers(unet, names, profile: Profile, *, span: Span | None = None) -> tuple[str, ...]:
    """Module names for requested feature layers; "default" is the profile's feature layer and
    x̂₀ and its picture (what `latent()` and `pixels()` read, `COMPUTED`) stay themselves: the
    sampler computes them, no module."""
    modules = dict(unet.named_modules())
    out = []
    for name in names:
        resolved = profile.feature_layer if name in ("default", None) else name
        if resolved not in modules and resolved not in COMPUTED:
            raise SGLError.single("E212", f"the model has no layer named {resolved!r}", span,
                                  hint="feature layers are UNet module names such as `up_blocks.1`")
        if resolved not in out:
            out.append(resolved)
    return tuple(out)
