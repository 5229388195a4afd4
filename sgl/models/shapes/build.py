"""Build the diffusers components of the `shapes` model from one config.

Everything is constructed locally (no hub access): a small AutoencoderKL (64x64 RGB <-> 16x16x4),
a small CLIPTextModel with a whole-word CLIPTokenizer built from the caption vocabulary, a
UNet2DConditionModel with cross-attention at 16x16, 8x8 (and the 4x4 mid block), and a DDIM
scheduler. `save_pipeline` writes a standard Stable Diffusion folder that loads offline with
`StableDiffusionPipeline.from_pretrained(folder)`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .data import VOCABULARY, MAX_TOKENS, IMAGE_SIZE

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass
class ShapesConfig:
    image_size: int = IMAGE_SIZE
    vae_channels: tuple[int, ...] = (16, 32, 64)  # 3 blocks -> downsampling factor 4
    vae_groups: int = 8
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_layers_per_block: int = 1
    unet_heads: int = 4  # diffusers' `attention_head_dim` (it is the number of heads)
    unet_groups: int = 8
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 128
    max_tokens: int = MAX_TOKENS
    vae_scaling_factor: float = 1.0  # set from the latent std after VAE training

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, s: str) -> "ShapesConfig":
        d = json.loads(s)
        for k, v in d.items():
            if isinstance(v, list):
                d[k] = tuple(v)
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# tokenizer

def _vocab_and_merges(words=VOCABULARY):
    """A byte-level BPE vocabulary in which every word of `words` is one token."""
    from transformers import CLIPTokenizer

    letters = sorted(set("".join(words)) | set("abcdefghijklmnopqrstuvwxyz"))
    vocab: dict[str, int] = {}
    for t in [BOS, EOS] + letters + [c + "</w>" for c in letters]:
        vocab.setdefault(t, len(vocab))
    merges: list[tuple[str, str]] = []
    for _ in range(20):  # add merges until every word is a single token
        tok = CLIPTokenizer(vocab=dict(vocab), merges=list(merges))
        done = True
        for w in words:
            pieces = tok.tokenize(w)
            if len(pieces) == 1:
                continue
            done = False
            acc = pieces[0]
            for p in pieces[1:]:
                if (acc, p) not in merges:
                    merges.append((acc, p))
                acc = acc + p
                vocab.setdefault(acc, len(vocab))
        if done:
            return vocab, merges
    raise RuntimeError("could not build whole-word merges")


def build_tokenizer(cfg: ShapesConfig | None = None):
    from transformers import CLIPTokenizer

    cfg = cfg or ShapesConfig()
    vocab, merges = _vocab_and_merges()
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=cfg.max_tokens)
    return tok


# ----------------------------------------------------------------------------------------------
# models

def build_vae(cfg: ShapesConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.vae_groups,
        sample_size=cfg.image_size,
        scaling_factor=cfg.vae_scaling_factor,
    )


def build_text_encoder(cfg: ShapesConfig, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    tc = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_tokens,
        projection_dim=cfg.text_hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(tc)


def build_unet(cfg: ShapesConfig):
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    return UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.unet_channels),
        layers_per_block=cfg.unet_layers_per_block,
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=cfg.unet_heads,
        norm_num_groups=cfg.unet_groups,
    )


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def build_components(cfg: ShapesConfig | None = None) -> dict:
    cfg = cfg or ShapesConfig()
    tok = build_tokenizer(cfg)
    return {
        "vae": build_vae(cfg),
        "text_encoder": build_text_encoder(cfg, tok),
        "tokenizer": tok,
        "unet": build_unet(cfg),
        "scheduler": build_scheduler(),
    }


def make_pipeline(components: dict):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=components["unet"],
        scheduler=components["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(components: dict, folder, fp16: bool = True, cfg: ShapesConfig | None = None):
    """Write a Stable Diffusion folder (safetensors; UNet and VAE in fp16 when `fp16`).

    diffusers loads fp16 UNet/VAE weights into fp32 modules by default, while transformers keeps a
    text encoder's saved dtype; the text encoder (75 k parameters) is therefore saved in fp32 so
    that a plain `from_pretrained(folder)` gives an all-fp32 pipeline that runs on a CPU."""
    import copy

    import torch

    folder = Path(folder)
    comps = dict(components)
    if fp16:
        for k in ("vae", "unet"):
            comps[k] = copy.deepcopy(comps[k]).to(torch.float16)
    pipe = make_pipeline(comps)
    pipe.save_pretrained(folder, safe_serialization=True)
    if cfg is not None:
        (folder / "shapes_config.json").write_text(cfg.to_json())
    return folder


def count_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


if __name__ == "__main__":  # quick look: sizes of the components
    c = build_components()
    for k in ("vae", "text_encoder", "unet"):
        print(k, count_params(c[k]))
    print(c["tokenizer"]("a small red circle and an orange star").input_ids)
