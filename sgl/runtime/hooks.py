"""Recording attention maps and features from a diffusers UNet, and nothing else.

A `Recorder` is a context manager around one UNet. While it is open, the watched
cross-attention layers run a `WatchingProcessor` and the feature layers carry forward hooks;
before each forward the caller says which batch rows belong to which source and which token
columns and features each source needs (`expect`), after it collects one `Recorded` per source
(`collect`). Forwards with nothing expected take the original fused path. While open, every
attention module also skips diffusers' per-call signature check (`install_direct_forwards`).
On exit the exact original processor objects are put back, the hooks removed and the modules'
own forward restored, so the pipeline's plain output is bitwise what it was (diffusers'
`set_attn_processor` is not used: it needs every layer and empties the dict it is given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F

from sgl.runtime.attention import (WatchingProcessor, check_replaceable, install_direct_forwards,
                                  remove_direct_forwards, select_probs)


@dataclass
class Recorded:
    """What one source produced in one UNet forward.

    `attn[key]`: [R, H, W] fp32 — for the token group `key`, the cross-attention probability
    summed over the group's columns, averaged over heads, resized (bilinear) to the largest
    watched resolution and averaged over the watched layers. `feats[layer]`: [R, C, h, w], the
    layer's output for those rows (at least fp32). R = the number of rows recorded for the source (usually 1:
    its conditional row)."""

    attn: dict[Hashable, torch.Tensor] = field(default_factory=dict)
    feats: dict[str, torch.Tensor] = field(default_factory=dict)

    def detached(self, device="cpu", dtype: torch.dtype | None = None) -> "Recorded":
        """A copy cut from the graph (for caching a source run)."""
        def cut(t):
            return t.detach().to(device=device, dtype=dtype or t.dtype)
        return Recorded({k: cut(v) for k, v in self.attn.items()}, {k: cut(v) for k, v in self.feats.items()})


@dataclass
class SourceRows:
    """A request for one forward: which batch `rows` belong to source `name`, which token
    groups (key → token columns) to record for them, and which feature layers (module names,
    a subset of the recorder's `feature_layers`)."""

    name: str
    rows: Sequence[int]
    tokens: dict[Hashable, Sequence[int]] = field(default_factory=dict)
    features: Sequence[str] = ()


@dataclass
class _Plan:
    """A request prepared for the processors: index tensors made once per forward."""

    name: str
    rows: torch.Tensor
    columns: torch.Tensor
    group_sizes: list[int]
    keys: list[Hashable]
    features: frozenset[str]


def infer_hw(sequence_length: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of an attention layer from its sequence length: the latent size divided by
    a power of two, rounding up as strided convolutions do."""
    height, width = latent_hw
    factor = 1
    while factor <= max(height, width):
        h, w = math.ceil(height / factor), math.ceil(width / factor)
        if h * w == sequence_length:
            return h, w
        factor *= 2
    side = math.isqrt(sequence_length)
    if side * side == sequence_length:
        return side, side
    raise ValueError(f"cannot place {sequence_length} positions on a {height}x{width} latent")


class Recorder:
    """Context manager that installs watching processors and feature hooks on `unet`.

    `attn_layers`: module names of cross-attention layers to watch; `feature_layers`: module
    names whose outputs can be recorded. `cut_autograd`: once every layer recorded in a
    gradient-enabled forward has run, switch autograd off for the rest of that forward (same
    gradient, far less memory); the caller restores grad mode (see `forward_scope`)."""

    def __init__(self, unet, attn_layers: Sequence[str], feature_layers: Sequence[str] = (), *,
                 cut_autograd: bool = False):
        self.unet = unet
        self.attn_layers = tuple(attn_layers)
        self.feature_layers = tuple(feature_layers)
        self.cut_autograd = cut_autograd
        self.explicit = False
        self._open = False
        self._plans: list[_Plan] = []
        self._latent_hw = (0, 0)
        self._attn_store: dict[str, dict[str, torch.Tensor]] = {}
        self._feat_store: dict[str, dict[str, torch.Tensor]] = {}
        self._pending: set[str] = set()
        self._whole = False
        self._recomputable = False
        self._originals: dict[str, object] = {}
        self._handles: list = []
        self._direct: list = []  # attention modules given `install_direct_forwards`' forward

    # -- installation -------------------------------------------------------------------------

    def __enter__(self) -> "Recorder":
        modules = dict(self.unet.named_modules())
        for name in self.attn_layers:
            check_replaceable(name, modules[name].processor)
        try:
            for name in self.attn_layers:
                module = modules[name]
                self._originals[name] = module.processor
                module.set_processor(WatchingProcessor(name, module.processor, self))
                self._handles.append(module.register_forward_hook(self._done_hook(name)))
            for name in self.feature_layers:
                self._handles.append(modules[name].register_forward_hook(self._feature_hook(name)))
            self._direct = install_direct_forwards(self.unet)
        except BaseException:
            self._uninstall()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._uninstall()

    def _uninstall(self) -> None:
        modules = dict(self.unet.named_modules())
        for name, original in self._originals.items():
            modules[name].set_processor(original)
        self._originals.clear()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        remove_direct_forwards(self._direct)
        self._direct = []
        self._open = False
        self.explicit = False

    # -- per forward ----------------------------------------------------------------------------

    def expect(self, sources: Sequence[SourceRows], latent_hw: tuple[int, int], device=None, *,
               whole: bool = False) -> None:
        """Declare what the next forward records. Sources with nothing to record are dropped;
        with nothing at all the forward takes the original fast path everywhere. `whole`: the
        caller differentiates the forward's output too, so autograd is never cut."""
        unknown = {f for s in sources for f in s.features} - set(self.feature_layers)
        if unknown:
            raise ValueError(f"feature layers {sorted(unknown)} are not hooked by this recorder")
        self._plans = [self._plan(s, device) for s in sources if s.tokens or s.features]
        self._latent_hw = tuple(latent_hw)
        self._attn_store = {p.name: {} for p in self._plans}
        self._feat_store = {p.name: {} for p in self._plans}
        wants_attn = any(p.keys for p in self._plans)
        self.explicit = wants_attn
        self._pending = (set(self.attn_layers) if wants_attn else set()).union(
            *(p.features for p in self._plans))
        self._open = bool(self._plans)
        self._whole = whole
        self._recomputable = torch.is_grad_enabled()

    def _plan(self, source: SourceRows, device) -> _Plan:
        keys = list(source.tokens)
        columns = [int(c) for k in keys for c in source.tokens[k]]
        return _Plan(source.name, torch.as_tensor(list(source.rows), dtype=torch.long, device=device),
                     torch.as_tensor(columns, dtype=torch.long, device=device),
                     [len(source.tokens[k]) for k in keys], keys, frozenset(source.features))

    def store_attention(self, layer: str, probs: torch.Tensor) -> None:
        # After `collect` (a gradient-checkpointing recomputation during backward) the same
        # selections are computed and dropped: recomputation must save the same tensors.
        for plan in self._plans:
            if plan.keys:
                rows = plan.rows.to(probs.device)
                picked = select_probs(probs, rows, plan.columns.to(probs.device))
                if self._open:
                    self._attn_store[plan.name][layer] = picked

    def _feature_hook(self, layer: str):
        def hook(module, inputs, output):
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            for plan in self._plans:  # also when closed: see store_attention
                if layer in plan.features:
                    picked = tensor.index_select(0, plan.rows.to(tensor.device))
                    picked = picked.to(torch.promote_types(picked.dtype, torch.float32))  # fp16 models too
                    if self._open:
                        self._feat_store[plan.name][layer] = picked
            if self._open:
                self._mark_done(layer)
        return hook

    def _done_hook(self, layer: str):
        def hook(module, inputs, output):
            if self._open:
                self._mark_done(layer)
        return hook

    def _mark_done(self, layer: str) -> None:
        self._pending.discard(layer)
        if self.cut_autograd and not self._whole and not self._pending and torch.is_grad_enabled():
            torch.set_grad_enabled(False)

    def forward_scope(self):
        """Wrap a recorded forward so that grad mode switched off by `cut_autograd` comes back."""
        return torch.set_grad_enabled(torch.is_grad_enabled())

    def collect(self) -> dict[str, Recorded]:
        """What the last forward recorded, per source; closes the forward."""
        out = {}
        for plan in self._plans:
            attn = self._aggregate(plan, self._attn_store[plan.name]) if plan.keys else {}
            out[plan.name] = Recorded(attn, dict(self._feat_store[plan.name]))
        self._open = False
        if not self._recomputable:  # a gradient forward keeps its plans for recomputation
            self._plans = []
        self._attn_store, self._feat_store = {}, {}
        return out

    def _aggregate(self, plan: _Plan, per_layer: dict[str, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Per layer [R, L, K] → per group [R, H, W], averaged over layers at the largest
        watched resolution."""
        if not per_layer:
            raise RuntimeError("no watched attention layer ran in this forward")
        sizes = {name: infer_hw(t.shape[1], self._latent_hw) for name, t in per_layer.items()}
        target = max(sizes.values(), key=lambda hw: hw[0] * hw[1])
        total = None
        for name, probs in per_layer.items():
            h, w = sizes[name]
            grouped = torch.stack([part.sum(-1) for part in probs.split(plan.group_sizes, dim=-1)], dim=1)
            grouped = grouped.reshape(grouped.shape[0], grouped.shape[1], h, w)
            if (h, w) != target:
                grouped = F.interpolate(grouped, size=target, mode="bilinear", align_corners=False)
            total = grouped if total is None else total + grouped
        mean = total / len(per_layer)
        return {key: mean[:, i] for i, key in enumerate(plan.keys)}
