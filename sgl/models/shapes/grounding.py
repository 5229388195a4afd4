"""Cross-attention recording and the token-grounding loss used to train `shapes`.

This is the trainer's own small processor (the runtime has its own in sgl/runtime/attention.py).
On every cross-attention layer (`…attn2`) it computes the attention probabilities explicitly and
stores them heads-averaged, shape (batch, queries, tokens), so that a loss can read them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sgl.runtime.attention import explicit_attention


class RecordingCrossAttnProcessor:
    def __init__(self, store: dict, name: str):
        self.store = store
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.norm_cross:
            ctx = attn.norm_encoder_hidden_states(ctx)
        B, N, _ = hidden_states.shape
        H = attn.heads
        q = attn.to_q(hidden_states)
        k = attn.to_k(ctx)
        v = attn.to_v(ctx)
        d = q.shape[-1] // H
        q = q.view(B, N, H, d).transpose(1, 2)
        k = k.view(B, -1, H, d).transpose(1, 2)
        v = v.view(B, -1, H, d).transpose(1, 2)
        mask = None if attention_mask is None else attention_mask.view(B, -1, 1, k.shape[-2])
        out, probs = explicit_attention(q, k, v, attn.scale, mask)
        self.store[self.name] = probs.mean(1)  # (B, N, T)
        out = out.transpose(1, 2).reshape(B, N, H * d)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install(unet, store: dict, watch=lambda name: True):
    """Record every cross-attention layer for which `watch(name)` is true; returns their names."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    procs, names = {}, []
    for name in unet.attn_processors.keys():
        layer = name[: -len(".processor")]
        if layer.endswith("attn2") and watch(layer):
            procs[name] = RecordingCrossAttnProcessor(store, layer)
            names.append(layer)
        else:
            procs[name] = AttnProcessor2_0()
    unet.set_attn_processor(procs)
    return names


def pooled_masks(labels: torch.Tensor, res: int, n_objects: int = 3) -> torch.Tensor:
    """labels uint8 (B, H, W) with object i as i+1 -> (B, n_objects, res*res) area fractions."""
    onehot = torch.stack([(labels == i + 1).float() for i in range(n_objects)], 1)
    return F.adaptive_avg_pool2d(onehot, res).flatten(2)


def grounding_loss(store: dict, labels: torch.Tensor, tokpos: torch.Tensor, keep: torch.Tensor, min_res: int = 8,
                   spread: float = 0.0):
    """Mean over layers of sum over object words of (1 - inside-fraction)^2, mean over the batch;
    with `spread` > 0, plus `spread` x KL(mask || attention) per word (both as distributions over
    the layer's cells).

    The inside fraction alone is met by attention peaked anywhere inside the object, and it was:
    on the weights trained without this term a word's 16x16 soft shape covered 19 % of its
    object's mask (`measure.attention_extent`), so a size energy was met by widening the peak
    rather than by drawing a larger object. The KL term asks the attention to spread over the
    whole object, as evenly as its mask: KL(q || p) is small only when p covers q (and 0 for an
    object with an empty mask, whose q is 0).

    labels (B, H, W) uint8; tokpos (B, 3 objects, 3 words) long, -1 where absent; keep (B,) bool:
    rows whose caption was not dropped. Layers with fewer than min_res x min_res queries are ignored.
    """
    B = labels.shape[0]
    pos = tokpos.reshape(B, -1)  # (B, 9); word k belongs to object k // 3
    valid = (pos >= 0) & keep[:, None]
    posc = pos.clamp(min=0)
    obj = torch.arange(pos.shape[1], device=pos.device) // tokpos.shape[2]
    masks_by_res = {}
    losses, insides = [], []
    for name, A in store.items():
        N = A.shape[1]
        r = int(math.isqrt(N))
        if r < min_res:
            continue
        if r not in masks_by_res:
            masks_by_res[r] = pooled_masks(labels, r, tokpos.shape[1])[:, obj]  # (B, 9, N)
        M = masks_by_res[r]
        a = A.gather(2, posc[:, None, :].expand(B, N, posc.shape[1])).transpose(1, 2)  # (B, 9, N)
        inside = (a * M).sum(-1) / (a.sum(-1) + 1e-8)
        per_word = (1 - inside) ** 2
        if spread > 0:
            q = M / M.sum(-1, keepdim=True).clamp_min(1e-8)
            p = a / a.sum(-1, keepdim=True).clamp_min(1e-8)
            kl = (q * (torch.log(q.clamp_min(1e-8)) - torch.log(p.clamp_min(1e-8)))).sum(-1)
            per_word = per_word + spread * kl
        losses.append((per_word * valid).sum(1))
        insides.append(inside.detach())
    if not losses:
        return labels.new_zeros((), dtype=torch.float32), None
    per_row = torch.stack(losses).mean(0)  # (B,)
    n = keep.float().sum().clamp(min=1)
    frac = (torch.stack(insides).mean(0) * valid).sum() / valid.sum().clamp(min=1)
    return per_row.sum() / n, frac


def attention_centroid(A: torch.Tensor) -> torch.Tensor:
    """A (B, N) one token's raw attention on a square grid -> (B, 2) centroid (x, y) in [0, 1]."""
    B, N = A.shape
    r = int(math.isqrt(N))
    c = (torch.arange(r, dtype=A.dtype, device=A.device) + 0.5) / r
    a = A.view(B, r, r)
    s = a.sum((1, 2)) + 1e-12
    return torch.stack([(a.sum(1) * c).sum(1) / s, (a.sum(2) * c).sum(1) / s], 1)
