"""Every differentiable intrinsic passes torch.autograd.gradcheck in float64 on small inputs."""

from __future__ import annotations

import re

import pytest
import torch

from sgl.ir.ops import ROUNDING
from sgl.resources import stdlib_dir
from sgl.runtime import evaluate as ev

GRID = (5, 6)
F64 = torch.float64


def rand(*shape, low=0.0, high=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed + sum(shape))
    return (low + (high - low) * torch.rand(*shape, generator=gen, dtype=F64)).requires_grad_(True)


def check(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


B = 2

CASES = {
    "attn": (lambda m: ev.attn(m, grid=GRID, dtype=F64), lambda: (rand(B, 3, 4),)),
    "attn_same_grid": (lambda m: ev.attn(m, grid=GRID, dtype=F64), lambda: (rand(B, *GRID),)),
    "feat": (lambda f: ev.feat(f, dtype=F64), lambda: (rand(B, 3, 4, 4),)),
    "latent": (lambda f: ev.latent(f, dtype=F64), lambda: (rand(B, 4, 4, 4),)),
    "pixels": (lambda f: ev.pixels(f, dtype=F64), lambda: (rand(B, 3, 8, 8),)),
    "add_map_scalar": (ev._lifted(ev.add, [0, 2]), lambda: (rand(B, *GRID), rand(B))),
    "sub_vec2": (ev.sub, lambda: (rand(B, 2), rand(B, 2, seed=1))),
    "mul_scalar_vector": (ev._lifted(ev.mul, [1, 0]), lambda: (rand(B), rand(B, 7))),
    "mul_map_map": (ev.mul, lambda: (rand(B, *GRID), rand(B, *GRID, seed=1))),
    "div_vec2_scalar": (ev._lifted(ev.div, [0, 1]), lambda: (rand(B, 2), rand(B, low=0.5))),
    "neg": (ev.neg, lambda: (rand(B, *GRID),)),
    "pack": (ev.pack, lambda: (rand(B), rand(B, seed=1))),
    "get_x": (ev.get_x, lambda: (rand(B, 2),)),
    "get_y": (ev.get_y, lambda: (rand(B, 2),)),
    "box": (lambda *c: ev.box(*c, grid=GRID),
            lambda: (rand(B, high=0.4), rand(B, high=0.4, seed=1), rand(B, low=0.55, seed=2),
                     rand(B, low=0.55, seed=3))),
    "circle": (lambda c, r: ev.circle(c, r, grid=GRID), lambda: (rand(B, 2, low=0.3, high=0.7), rand(B, low=0.2, high=0.4))),
    "normalize": (ev.normalize, lambda: (rand(B, *GRID),)),
    "softthr": (ev.softthr, lambda: (rand(B, *GRID), rand(B, low=5, high=12))),
    "sum": (ev.sum_, lambda: (rand(B, *GRID),)),
    "mean": (ev.mean, lambda: (rand(B, *GRID),)),
    "max": (ev.max_, lambda: (rand(B, *GRID),)),
    "min": (ev.min_, lambda: (rand(B, *GRID),)),
    "pool": (lambda f: ev.pool(f, (torch.rand(B, *GRID, dtype=F64, generator=torch.Generator().manual_seed(5)))),
             lambda: (rand(B, 3, 4, 4),)),
    "like": (lambda f, v, w: ev.like(f, v, w, grid=GRID), lambda: (rand(B, 3, 4, 4), rand(B, 3, seed=1), rand(B, low=0.5, high=1.5))),
    "like_finer_grid": (lambda f, v, w: ev.like(f, v, w, grid=GRID),
                        lambda: (rand(B, 3, 10, 12), rand(B, 3, seed=1), rand(B, low=0.5, high=1.5))),
    "like_same_grid": (lambda f, v, w: ev.like(f, v, w, grid=GRID),
                       lambda: (rand(B, 3, *GRID), rand(B, 3, seed=1), rand(B, low=0.5, high=1.5))),
    "shift": (ev.shift, lambda: (rand(B, *GRID), rand(B, 2, low=-0.23, high=0.23))),
    "scale": (ev.scale, lambda: (rand(B, *GRID), rand(B, low=0.63, high=1.7))),
    "abs": (ev.abs_, lambda: (rand(B, low=-1),)),
    "sqrt": (ev.sqrt, lambda: (rand(B, low=0.1),)),
    "norm_vec2": (ev.norm, lambda: (rand(B, 2, low=-1),)),
    "norm_vector": (ev.norm, lambda: (rand(B, 7, low=-1),)),
    "dot": (ev.dot, lambda: (rand(B, 7, low=-1), rand(B, 7, low=-1, seed=1))),
    "relu": (ev.relu, lambda: (rand(B, low=-1),)),
    "l1": (ev.l1, lambda: (rand(B, *GRID), rand(B, *GRID, seed=1))),
    # within the rounded kink (|d| < ROUNDING): the parabola and its joins
    "l1_near_zero": (ev.l1, lambda: (rand(B, 7, low=-ROUNDING, high=ROUNDING), torch.zeros(B, 7, dtype=F64))),
    "hinge": (ev.hinge, lambda: (rand(B, 7, low=-1),)),
    "hinge_near_zero": (ev.hinge, lambda: (rand(B, 7, low=-ROUNDING, high=2 * ROUNDING),)),
    "l2": (ev.l2, lambda: (rand(B, 7), rand(B, 7, seed=1))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    fn, make = CASES[name]
    check(fn, *make())


def test_sides_equal_up_to_float_noise_give_no_gradient():
    """At the first step the edited and the original run see the same latents: a term
    `centroid(o) = centroid₀(o)` differs only by rounding noise there, and must not push (a plain
    |d| gives a full ±1 gradient whose sign the noise picks). Past the rounding, |d|'s own."""
    a = rand(B, 7)
    noise = 1e-7 * torch.randn(B, 7, dtype=F64, generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(ev.l1(a, a.detach() + noise).sum(), a)
    assert grad.abs().max() < 0.01 / 7  # under 1 % of |d|'s 1 / 7
    v = (1e-6 * torch.ones(B, dtype=F64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(ev.hinge(v).sum(), v)
    assert grad.abs().max() < 0.02
    far = (a.detach() + 0.01).requires_grad_(True)
    (grad,) = torch.autograd.grad(ev.l1(far, a.detach()).sum(), far)
    assert torch.allclose(grad, torch.full_like(grad, 1 / 7))


def test_pool_gradient_does_not_reach_the_mask():
    f, m = rand(B, 3, 4, 4), rand(B, *GRID, seed=1)
    ev.pool(f, m).sum().backward()
    assert f.grad is not None and m.grad is None


def test_hardthr_and_detach_give_no_gradient():
    m = rand(B, *GRID)
    assert not ev.hardthr(m, torch.tensor([0.5], dtype=F64)).requires_grad
    assert not ev.detach(m).requires_grad


def test_sqrt_and_norm_stay_finite_at_zero():
    v = torch.zeros(B, 2, dtype=F64, requires_grad=True)
    (ev.norm(v).sum() + ev.sqrt(v[:, 0]).sum()).backward()
    assert torch.isfinite(v.grad).all()


def test_circle_centre_on_a_subsample_has_finite_gradient():
    centre = torch.tensor([[0.5, 0.5]], dtype=F64, requires_grad=True)
    radius = torch.tensor([0.001], dtype=F64, requires_grad=True)
    ev.circle(centre, radius, grid=(4, 4)).sum().backward()
    assert torch.isfinite(centre.grad).all() and torch.isfinite(radius.grad).all()


def test_every_prelude_intrinsic_and_ir_op_has_one_implementation():
    prelude = (stdlib_dir() / "prelude.sgl").read_text()
    externs = set(re.findall(r"^extern fn (\w+)", prelude, flags=re.M))
    compile_time = {"objects", "others"}
    assert externs - compile_time <= set(ev.INTRINSICS)
    ir_ops = {"const", "attn", "feat", "latent", "pixels", "x", "y", "mask", "add", "sub", "mul", "div", "neg", "pack",
              "get_x", "get_y", "l1", "l2", "hinge"}
    assert ir_ops <= set(ev.INTRINSICS)
    assert set(ev.INTRINSICS) <= externs | ir_ops


def test_each_intrinsic_is_registered_once():
    with pytest.raises(ValueError):
        ev.intrinsic("relu")(lambda v: v)
