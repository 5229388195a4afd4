"""`gradient "balanced"`: every term's gradient divided by its own size, so that weights are
shares of the step whatever the scale of each term."""

import torch

from sgl.runtime.balance import Balancer, row_rms
from sgl.runtime.sampler import SELF, EnergyOut, sample

from test_runtime_sampler import PROMPT, STEPS, centroid_x


def _linear_parts(z, a, b, ka=1000.0, kb=0.001, wa=1.0, wb=3.0):
    """Two linear terms whose gradients (ka·a and kb·b) differ by six orders of magnitude."""
    return {"big": (wa, ka * (z * a).flatten(1).sum(1)), "small": (wb, kb * (z * b).flatten(1).sum(1))}


def test_each_term_gets_its_weight_whatever_its_scale():
    torch.manual_seed(0)
    a, b = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    z = torch.zeros(1, 4, 3, 3, requires_grad=True)
    grad = Balancer().gradient(_linear_parts(z, a, b), z, step=0)
    expected = 1.0 * a / row_rms(a) + 3.0 * b / row_rms(b)
    assert torch.allclose(grad, expected, atol=1e-5)
    # the plain gradient of the sum is all `big`
    plain = 1000.0 * a + 3.0 * 0.001 * b
    assert torch.nn.functional.cosine_similarity(plain.flatten(), a.flatten(), dim=0) > 0.999


def test_sizes_are_reused_between_measurements_and_measured_again_later():
    torch.manual_seed(1)
    a, b = torch.randn(1, 2, 2, 2), torch.randn(1, 2, 2, 2)
    balancer = Balancer(every=3)
    z = torch.zeros(1, 2, 2, 2, requires_grad=True)
    balancer.gradient(_linear_parts(z, a, b), z, step=0)
    # step 1: `big` has grown tenfold; its size was measured at step 0, so it pulls ten times more
    z = torch.zeros(1, 2, 2, 2, requires_grad=True)
    grad = balancer.gradient(_linear_parts(z, a, b, ka=10000.0), z, step=1)
    assert torch.allclose(grad, 10.0 * a / row_rms(a) + 3.0 * b / row_rms(b), atol=1e-4)
    assert balancer.measured == {"big": 0, "small": 0}
    # step 3: measured again, back to its share
    z = torch.zeros(1, 2, 2, 2, requires_grad=True)
    grad = balancer.gradient(_linear_parts(z, a, b, ka=10000.0), z, step=3)
    assert torch.allclose(grad, a / row_rms(a) + 3.0 * b / row_rms(b), atol=1e-4)
    assert balancer.measured == {"big": 3, "small": 3}


def test_a_term_without_gradient_adds_nothing_and_is_measured_when_it_has_one():
    torch.manual_seed(2)
    a = torch.randn(1, 2, 2, 2)
    balancer = Balancer()
    z = torch.zeros(1, 2, 2, 2, requires_grad=True)
    held = torch.relu(-1.0 - (z * a).flatten(1).sum(1))  # a hinge that holds at z = 0: no gradient
    parts = {"push": (2.0, (z * a).flatten(1).sum(1)), "hinge": (5.0, held)}
    grad = balancer.gradient(parts, z, step=0)
    assert torch.allclose(grad, 2.0 * a / row_rms(a), atol=1e-6)
    assert "hinge" not in balancer.scales
    z = torch.zeros(1, 2, 2, 2, requires_grad=True)
    violated = torch.relu(1.0 - (z * a).flatten(1).sum(1))  # now it does not hold
    grad = balancer.gradient({"hinge": (5.0, violated)}, z, step=1)
    assert torch.allclose(grad, -5.0 * a / row_rms(a), atol=1e-6)
    assert balancer.measured["hinge"] == 1


def test_no_term_depends_on_the_latent():
    z = torch.zeros(1, 2, 2, 2, requires_grad=True)
    assert Balancer().gradient({"const": (1.0, torch.ones(1))}, z, step=0) is None


def test_balanced_sampling_ignores_each_terms_scale(tiny_sd):
    """A term whose values are 1000× larger takes the whole step of a `unit` run but only its
    weight's share of a `balanced` one; and balanced guidance does guide."""
    def energy(k):
        def fn(step, rec):
            right = k * (1.0 - centroid_x(rec[SELF].attn["dog"]))
            down = rec[SELF].attn["cat"].mean((1, 2))
            return EnergyOut(total=right + down, parts={"right": (1.0, right), "down": (1.0, down)})
        return fn

    common = dict(prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, tokens={"dog": "dog", "cat": "cat"}, strength=0.5)
    bal_1 = sample(tiny_sd, gradient="balanced", energy=energy(1.0), **common)
    bal_1000 = sample(tiny_sd, gradient="balanced", energy=energy(1000.0), **common)
    assert (bal_1.latents - bal_1000.latents).abs().max() < 1e-4
    unit_1 = sample(tiny_sd, gradient="unit", energy=energy(1.0), **common)
    unit_1000 = sample(tiny_sd, gradient="unit", energy=energy(1000.0), **common)
    assert (unit_1.latents - unit_1000.latents).abs().max() > 1e-3
    plain = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5)
    assert (bal_1.latents - plain.latents).abs().max() > 1e-3


def test_the_trace_shows_each_terms_measured_gradient_size(tiny_sd):
    def energy(step, rec):
        right = 1.0 - centroid_x(rec[SELF].attn["dog"])
        return EnergyOut(total=right, parts={"right": (1.0, right)})

    result = sample(tiny_sd, prompt=PROMPT, seed=3, steps=STEPS, cfg=7.5, tokens={"dog": "dog"}, strength=0.5,
                    gradient="balanced", energy=energy)
    measured = [s.scales for s in result.trace]
    assert measured[0].keys() == {"right"} and measured[0]["right"] > 0
    assert measured[1] == {}  # reused until CALIBRATE_EVERY steps have passed
