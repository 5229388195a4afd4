"""An attention processor that can see the cross-attention probabilities.

diffusers' default processor calls fused scaled-dot-product attention, which never materialises
softmax(QKᵀ/√d); self-guidance needs those probabilities, differentiably. On the few watched
cross-attention layers, and only in a forward where something is to be recorded, this processor
computes the softmax explicitly (fp32 at least, so fp16 models keep accurate maps) and returns
the same output as the default processor; everywhere else the original processor runs unchanged.
What it records is chosen by its owner (the `Recorder`): per source, some batch rows and some
token columns, heads averaged — never the full [B, heads, HW, T] tensor.
"""

from __future__ import annotations

import torch

from sgl.diagnostics import SGLError

SUPPORTED_ORIGINALS = ("AttnProcessor2_0", "AttnProcessor")


def check_replaceable(name: str, processor) -> None:
    """Only the default processors compute plain attention that the explicit path reproduces;
    anything else (IP-adapter, fused QKV, xformers, custom) would be silently changed."""
    kind = type(processor).__name__
    if kind not in SUPPORTED_ORIGINALS:
        raise SGLError.single(
            "E213", f"layer {name} uses the attention processor {kind}, which SGL cannot watch",
            hint="reset the pipeline's processors (`pipe.unet.set_default_attn_processor()`, "
                 "`pipe.unfuse_qkv_projections()`) or watch other layers")


def explicit_attention(query, key, value, scale: float, attention_mask=None):
    """Multi-head attention with the probabilities materialised.

    `query`, `key`, `value` are [B, heads, L|T, d]; returns (output [B, heads, L, d] in the
    value dtype, probabilities [B, heads, L, T] in at least fp32)."""
    compute_dtype = torch.promote_types(query.dtype, torch.float32)
    scores = torch.matmul(query.to(compute_dtype), key.to(compute_dtype).transpose(-1, -2)) * scale
    if attention_mask is not None:
        scores = scores + attention_mask.to(compute_dtype)
    probs = scores.softmax(dim=-1)
    output = torch.matmul(probs.to(value.dtype), value)
    return output, probs


def select_probs(probs: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Probabilities of some rows and token columns, heads averaged: [R, L, K]."""
    picked = probs.index_select(0, rows).index_select(-1, columns)
    return picked.mean(dim=1)


class WatchingProcessor:
    """Drop-in replacement of AttnProcessor2_0 for one watched cross-attention layer.

    `owner` decides per forward: `owner.explicit` (take the explicit path; must stay the same
    during a gradient-checkpointing recomputation) and `owner.store_attention(name, probs)`.
    """

    def __init__(self, name: str, original, owner):
        self.name = name
        self.original = original
        self.owner = owner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        if encoder_hidden_states is None or not self.owner.explicit:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                                 *args, **kwargs)
        return self._explicit(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def _explicit(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb):
        # Mirrors diffusers' AttnProcessor2_0 step by step; only the attention itself differs.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # AttnProcessor2_0 leaves SDPA's default scale 1/sqrt(d); AttnProcessor uses attn.scale.
        scale = attn.scale if type(self.original).__name__ == "AttnProcessor" else head_dim ** -0.5
        hidden_states, probs = explicit_attention(query, key, value, scale, attention_mask)
        self.owner.store_attention(self.name, probs)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _direct_forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
    """diffusers' `Attention.forward` without its per-call `inspect.signature` of the processor
    (which only filters `cross_attention_kwargs`; the sampler passes none): a few % of every
    UNet call of a small model (cProfile, docs/benchmarks.md session 26). With keyword
    arguments, the class's own forward runs."""
    if kwargs:
        return type(self).forward(self, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
    return self.processor(self, hidden_states, encoder_hidden_states=encoder_hidden_states,
                          attention_mask=attention_mask)


def install_direct_forwards(unet) -> list:
    """Give every attention module of `unet` that runs diffusers' own `Attention.forward` the
    direct forward above, on the instance (not the class: other pipelines are untouched);
    returns the modules, for `remove_direct_forwards`."""
    from diffusers.models.attention_processor import Attention

    changed = []
    for module in unet.modules():
        if type(module).forward is Attention.forward and "forward" not in vars(module):
            module.forward = _direct_forward.__get__(module)
            changed.append(module)
    return changed


def remove_direct_forwards(modules) -> None:
    """Undo `install_direct_forwards`: the class's forward again."""
    for module in modules:
        vars(module).pop("forward", None)
