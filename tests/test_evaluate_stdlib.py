"""The stdlib/core.sgl properties, evaluated through the IR, against the RESEARCH.md formulas
written directly in float64 torch: values and gradients w.r.t. the guided run's inputs."""

from __future__ import annotations

import pytest
import torch

from sgl.bench.energy import CoreIR
from sgl.ir.nodes import Term
from sgl.ir.ops import ROUNDING
from sgl.runtime.evaluate import Evaluator, Inputs


def rounded_abs(diff):
    """|diff| with the kink the IR's l1 rounds (sgl/ir/ops.py), from torch's Huber loss."""
    return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=ROUNDING) / ROUNDING

F64 = torch.float64
H, W = 7, 9
B = 3
DOG = ("dog",)


def reference_normalize(a):
    flat = a.reshape(a.shape[0], -1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    return (a - lo[:, None, None]) / (hi - lo)[:, None, None]


def reference_shape(a):
    return reference_normalize(torch.sigmoid(10 * (reference_normalize(a) - 0.5)))


def reference_size(a):
    return reference_shape(a).mean(dim=(1, 2))


def reference_centroid(a):
    ys, xs = torch.meshgrid((torch.arange(H, dtype=F64) + 0.5) / H, (torch.arange(W, dtype=F64) + 0.5) / W,
                            indexing="ij")
    total = a.sum(dim=(1, 2))
    return torch.stack(((a * xs).sum(dim=(1, 2)) / total, (a * ys).sum(dim=(1, 2)) / total), dim=1)


def reference_appearance(a, f):
    hard = (reference_normalize(a.detach()) > 0.5).to(F64)  # same grid as the features here
    return torch.einsum("bhw,bchw->bc", hard, f) / hard.sum(dim=(1, 2))[:, None]


REFERENCES = {"shape": reference_shape, "size": reference_size, "centroid": reference_centroid}


def inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    attn = (torch.rand(B, H, W, generator=gen, dtype=F64) ** 3).requires_grad_(True)
    feats = torch.randn(B, 5, H, W, generator=gen, dtype=F64).requires_grad_(True)
    target_attn = torch.rand(B, H, W, generator=gen, dtype=F64) ** 3
    target_feats = torch.randn(B, 5, H, W, generator=gen, dtype=F64)
    return attn, feats, target_attn, target_feats


def evaluate(root, attn, feats, target_attn, target_feats):
    evaluator = Evaluator([Term(root, 1.0, (0.0, 1.0), "eq", "l1", "probe")], grid=(H, W), dtype=F64)
    recorded = Inputs({("self", DOG): attn, ("orig", DOG): target_attn},
                      {("self", "default"): feats, ("orig", "default"): target_feats})
    return evaluator(0, 1, recorded).total


@pytest.mark.parametrize("prop", sorted(REFERENCES))
@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_property_matches_the_reference(prop, distance):
    ir = CoreIR()
    root = ir.op(distance, ir.size(DOG).type, getattr(ir, prop)(DOG), getattr(ir, prop)(DOG, "orig"))
    attn, feats, target_attn, target_feats = inputs()
    ours = evaluate(root, attn, feats, target_attn, target_feats)
    (grad_ours,) = torch.autograd.grad(ours.sum(), attn)

    ref = REFERENCES[prop]
    diff = ref(attn) - ref(target_attn).detach()
    per_element = rounded_abs(diff) if distance == "l1" else diff * diff
    expected = per_element.reshape(B, -1).mean(dim=1)
    (grad_expected,) = torch.autograd.grad(expected.sum(), attn)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(grad_ours, grad_expected, rtol=1e-8, atol=1e-12)


def test_appearance_matches_the_reference():
    ir = CoreIR()
    root = ir.l1(ir.appearance(DOG), ir.appearance(DOG, "orig"))
    attn, feats, target_attn, target_feats = inputs(seed=1)
    ours = evaluate(root, attn, feats, target_attn, target_feats)
    grad_attn, grad_feats = torch.autograd.grad(ours.sum(), (attn, feats), allow_unused=True)
    expected = rounded_abs(reference_appearance(attn, feats) - reference_appearance(target_attn, target_feats)).mean(dim=1)
    (grad_expected,) = torch.autograd.grad(expected.sum(), feats)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(grad_feats, grad_expected, rtol=1e-8, atol=1e-12)
    assert grad_attn is None  # the mask is detached: appearance steers features only


def test_a_moved_centroid_target_matches_the_reference():
    """centroid(dog) = centroid₀(dog) + (0.3, 0), as in examples/move_dog.sgl."""
    ir = CoreIR()
    target = ir.op("add", ir.vec(0, 0).type, ir.centroid(DOG, "orig"), ir.vec(0.3, 0.0))
    root = ir.l1(ir.centroid(DOG), target)
    attn, feats, target_attn, target_feats = inputs(seed=2)
    ours = evaluate(root, attn, feats, target_attn, target_feats)
    moved = reference_centroid(target_attn) + torch.tensor([0.3, 0.0], dtype=F64)
    expected = rounded_abs(reference_centroid(attn) - moved).mean(dim=1)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_the_energy_is_differentiable_end_to_end():
    """gradcheck through a whole multi-term program (shape, size, centroid of one object)."""
    ir = CoreIR()
    terms = [Term(ir.l1(ir.shape(DOG), ir.shape(DOG, "orig")), 2.0, (0.0, 1.0), "eq", "l1", "shape"),
             Term(ir.op("l2", ir.size(DOG).type, ir.size(DOG), ir.size(DOG, "orig")), 0.7, (0.0, 1.0), "eq", "l2",
                  "size"),
             Term(ir.l1(ir.centroid(DOG), ir.centroid(DOG, "orig")), 5.0, (0.0, 1.0), "eq", "l1", "centroid")]
    evaluator = Evaluator(terms, grid=(H, W), dtype=F64)
    target_attn = inputs(seed=3)[2][:2]

    def energy(attn):
        return evaluator(0, 1, Inputs({("self", DOG): attn, ("orig", DOG): target_attn})).total

    attn = (torch.rand(2, H, W, dtype=F64, generator=torch.Generator().manual_seed(9)) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(energy, (attn,), eps=1e-6, atol=1e-5, rtol=1e-4)
