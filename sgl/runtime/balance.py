"""`gradient "balanced"`: each term of the energy gets the share of the guidance step that its
weight says.

With one gradient of the summed energy (`raw`, `unit`), a term's pull is its weight times the
size of its own gradient, and those sizes differ by orders of magnitude between properties: on
the embedded `shapes` model, per unit weight, the gradient of a centroid term is about 5× that of
a kept object's centroid, 20× that of a size term and 4 000× that of a raw attention map
(docs/benchmarks.md). A weight then says little, and a small property (a size) drowns under the
centroids of everything that is kept. Here every term's gradient is divided by its own
root-mean-square size, measured on its own backward pass, so that

    ∇g_balanced = Σ_k w_k · ∇E_k / rms(∇E_k)

and the sum is then scaled to unit RMS like `gradient "unit"`. The sizes change slowly along a
run, so they are measured once per term when it first has a gradient and again every
`every` steps (one extra backward pass per term then); in between, one backward pass of
Σ (w_k / s_k)·E_k gives the same combination. A term whose gradient is zero when measured (a
hinge that holds, an L2 distance at its target) adds nothing and is measured again at the
next step.
"""

from __future__ import annotations

from typing import Mapping

import torch

CALIBRATE_EVERY = 5  # steps between two measurements of a term's gradient size


def row_rms(grad: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of every batch row, shaped to broadcast against `grad`."""
    return grad.flatten(1).pow(2).mean(1).sqrt().view(-1, *([1] * (grad.dim() - 1)))


class Balancer:
    """The per-term gradient sizes of one sampling run (terms are told apart by name)."""

    def __init__(self, every: int = CALIBRATE_EVERY):
        self.every = int(every)
        self.scales: dict[str, torch.Tensor] = {}   # name → rms of its last measured gradient, [B, 1, …]
        self.measured: dict[str, int] = {}          # name → the step it was measured at

    def _due(self, name: str, step: int) -> bool:
        return name not in self.scales or step - self.measured[name] >= self.every

    def gradient(self, parts: Mapping[str, tuple[float, torch.Tensor]], z: torch.Tensor, step: int,
                 loss_scale: float = 1.0) -> torch.Tensor | None:
        """Σ_k w_k·∇_z E_k / s_k for `parts` (name → (weight, unweighted value [B] or [])), or None
        when no term depends on z. `loss_scale` multiplies every backward pass (fp16)."""
        total: torch.Tensor | None = None

        def add(grad: torch.Tensor) -> None:
            nonlocal total
            total = grad if total is None else total + grad

        due = [name for name in parts if self._due(name, step)]
        for name in due:
            weight, value = parts[name]
            if not value.requires_grad:
                continue
            (grad,) = torch.autograd.grad(value.float().sum() * loss_scale, z, retain_graph=True,
                                          allow_unused=True)
            if grad is None:
                continue
            grad = grad.float() / loss_scale
            rms = row_rms(grad)
            if not bool(torch.isfinite(rms).all()) or float(rms.min()) <= 1e-20:
                continue  # no gradient now (or a broken one): nothing to add, measure again later
            self.scales[name], self.measured[name] = rms, step
            add(grad * (weight / rms))
        rest = [name for name in parts if name not in due and parts[name][1].requires_grad]
        if rest:
            combined = None
            for name in rest:
                weight, value = parts[name]
                scale = self.scales[name].flatten()
                piece = (value.float().reshape(-1) * (weight / scale).to(value.device)).sum()
                combined = piece if combined is None else combined + piece
            (grad,) = torch.autograd.grad(combined * loss_scale, z, allow_unused=True)
            if grad is not None:
                add(grad.float() / loss_scale)
        return total
