"""Shared fixtures: tiny random Stable Diffusion 1.x and SDXL pipelines, built offline.

Importing diffusers and transformers takes seconds, building the pipelines a fraction of one:
both are built once per test session and shared by every test that asks for them. Weights are
random (seeded), so tests check mechanics (shapes, equalities, gradients), never image quality.
Tests that change a pipeline (scheduler, processors) must restore it.
"""

from __future__ import annotations

import pytest

TINY_WORDS = ["a", "photo", "of", "dog", "cat", "and", "red", "blue", "car", "house", "on", "the",
              "beach", "circle", "square", "triangle", "in", "snow", "wooden"]
TINY_LATENT = 16  # latent side; the VAE below scales by 2, so images are 32 x 32


def limit_torch_threads() -> None:
    """One intra-op thread (override with SGL_TEST_THREADS): on a small shared CPU, tiny models
    run 3-10x faster single-threaded than with threads spinning against other processes."""
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("SGL_TEST_THREADS", "1")))


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=2 * TINY_LATENT)


def _tiny_text_encoder(vocab_size: int, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model_cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return model_cls(config).eval()


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def build_tiny_sd():
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from sgl.runtime.tokens import word_tokenizer

    torch.manual_seed(0)
    tokenizer = word_tokenizer(TINY_WORDS, max_length=77)
    unet = UNet2DConditionModel(
        sample_size=TINY_LATENT, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4)
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(), text_encoder=_tiny_text_encoder(len(tokenizer)), tokenizer=tokenizer,
        unet=unet, scheduler=_ddim(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.eval().requires_grad_(False)
    return pipe


def build_tiny_sdxl():
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    from sgl.runtime.tokens import word_tokenizer

    torch.manual_seed(0)
    tokenizer = word_tokenizer(TINY_WORDS, max_length=77)
    tokenizer_2 = word_tokenizer(TINY_WORDS, max_length=77)
    unet = UNet2DConditionModel(
        sample_size=TINY_LATENT, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64)
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(), text_encoder=_tiny_text_encoder(len(tokenizer)),
        text_encoder_2=_tiny_text_encoder(len(tokenizer), with_projection=True),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=_ddim(),
        add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.eval().requires_grad_(False)
    return pipe


@pytest.fixture(scope="session")
def tiny_sd():
    """A tiny random SD 1.x-style pipeline (DDIM, 16x16 latent, 32x32 images)."""
    limit_torch_threads()
    return build_tiny_sd()


@pytest.fixture(scope="session")
def tiny_sdxl():
    """A tiny random SDXL-style pipeline (two text encoders, text_time embedding, DDIM)."""
    limit_torch_threads()
    return build_tiny_sdxl()


@pytest.fixture(scope="session")
def tiny_sd_dir(tiny_sd, tmp_path_factory):
    """The tiny SD pipeline saved as a diffusers folder."""
    path = tmp_path_factory.mktemp("tiny_sd")
    tiny_sd.save_pretrained(path)
    return path
