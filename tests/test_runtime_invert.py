"""DDIM inversion of real images, and inverted images as sources.

Measured on the tiny random SD pipeline (DDIM, 16x16x4 latents, |z0| ≈ 0.04):
- a UNet whose output does not depend on its input (conv_out weights zeroed): inverting then
  sampling back reconstructs the encoded latent to 1e-7 (4 and 20 steps): the bookkeeping is exact;
- conv_out weights x0.01 (output weakly input-dependent): max error 3.4e-3 / mean 6e-4 at 20 steps;
- the random UNet as is (large, input-dependent outputs): errors of order 1 — reconstruction quality
  is a property of the model, which is why the tests use the first two settings.
"""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from sgl.diagnostics import SGLError
from sgl.runtime.invert import invert, prepare_image
from sgl.runtime.sampler import SELF, EnergyOut, SourceSpec, sample

CAPTION = "a photo of a red car"


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.random((4, 4, 3)), np.ones((10, 12, 1)))  # 40 x 48, not the model size
    return Image.fromarray((blocks * 255).astype(np.uint8))


def _with_conv_out_scaled(pipe, factor):
    pipe = copy.deepcopy(pipe)
    pipe.unet.conv_out.weight.data *= factor
    return pipe


@pytest.mark.parametrize("factor, steps, tolerance", [(0.0, 4, 1e-5), (0.01, 20, 1e-2)])
def test_invert_then_sample_reconstructs_the_latent(tiny_sd, picture, factor, steps, tolerance):
    pipe = _with_conv_out_scaled(tiny_sd, factor)
    trajectory = invert(pipe, picture, CAPTION, steps=steps)
    assert len(trajectory.latents) == steps + 1 and trajectory.image.size == (32, 32)
    back = sample(pipe, prompt=CAPTION, steps=steps, cfg=1.0, start_latents=trajectory.latents[0])
    assert (back.latents - trajectory.latents[-1]).abs().max().item() < tolerance


def test_inverted_image_is_a_source(tiny_sd, picture):
    steps = 3
    trajectory = invert(tiny_sd, picture, CAPTION, steps=steps)
    seen = []

    def energy(step, recorded):
        photo = recorded["photo"]
        seen.append(photo.attn["car"].shape)
        mine = recorded[SELF].feats["up_blocks.0"]
        return EnergyOut((mine - photo.feats["up_blocks.0"]).abs().mean())

    result = sample(tiny_sd, prompt="a photo of a dog", seed=1, steps=steps, cfg=7.5, strength=10.0,
                    energy=energy, features=["default"],
                    sources=[SourceSpec("photo", trajectory=trajectory, tokens={"car": "car"},
                                        features=["default"])])
    assert seen == [(1, 16, 16)] * steps
    assert result.sources["photo"].image is trajectory.image
    assert all(s.grad_norm > 0 for s in result.trace)


def test_trajectory_over_other_timesteps_is_e226(tiny_sd, picture):
    trajectory = invert(tiny_sd, picture, CAPTION, steps=4)
    with pytest.raises(SGLError) as err:
        sample(tiny_sd, prompt="a photo of a dog", steps=3, sources=[SourceSpec("photo", trajectory=trajectory)])
    assert err.value.diagnostics[0].code == "E226"


def test_sdxl_inversion_runs(tiny_sdxl, picture):
    trajectory = invert(tiny_sdxl, picture, CAPTION, steps=2)
    assert trajectory.latents[0].shape == (1, 4, 16, 16)
    assert torch.isfinite(torch.stack(trajectory.latents)).all()


def test_prepare_image_crops_the_centre(tmp_path):
    image = Image.new("RGB", (60, 30), "red")
    image.paste(Image.new("RGB", (30, 30), "blue"), (15, 0))
    fitted = prepare_image(image, 32, 32)
    assert fitted.size == (32, 32) and fitted.getpixel((16, 16)) == (0, 0, 255)
    path = tmp_path / "x.png"
    image.save(path)
    assert prepare_image(str(path), 16, 8).size == (8, 16)
