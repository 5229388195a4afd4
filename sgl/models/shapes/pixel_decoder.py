"""A small decoder from x̂₀ to its picture, distilled from the `shapes` VAE's decoder.

`pixels()` reads the model's clean-image estimate x̂₀ as a picture; under guidance that is a
decode with its backward at every guided evaluation, and on the `shapes` model the VAE's decoder
(group norms, a mid-block attention, 64×64 convolutions) cost about as much as half a UNet pass:
a resize, whose `drawn` reads pixels, took 12.7 s against the 10 s full-edit target
(docs/benchmarks.md, session 23). This decoder — three convolution stages, no norms — is
trained to reproduce the VAE decoder's output on x̂₀ as sampling produces it (every step of
unguided runs, so blurry early estimates too, plus encoded renders, with noise), and costs a
quarter of it. A folder that holds `pixel_decoder/` has its `pixels()` read through it during
sampling; the images SGL writes are still decoded by the VAE.

    python -m sgl.models.shapes.pixel_decoder [--folder DIR] [--out DIR]

reproduces the shipped `weights/pixel_decoder/` from the shipped model (seeded; 39 minutes on
2 CPU threads).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from .export import WEIGHTS_DIR

FOLDER = "pixel_decoder"
DEFAULTS = {"channels": [48, 32, 16], "blocks": [2, 1, 0]}
ESTIMATE_BATCH = 16  # scenes sampled together for the training estimates


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class PixelDecoder(nn.Module):
    """Scaled latents [B, 4, h, w] → RGB [B, 3, 4h, 4w] about [0, 1] (as `decode_pixels`):
    one stage per resolution, `channels[i]` wide with `blocks[i]` residual blocks, ×2 nearest
    upsampling between stages."""

    def __init__(self, channels=DEFAULTS["channels"], blocks=DEFAULTS["blocks"], latent_channels: int = 4):
        super().__init__()
        self.config = {"channels": list(channels), "blocks": list(blocks), "latent_channels": latent_channels}
        layers: list[nn.Module] = []
        width = latent_channels
        for i, (c, n) in enumerate(zip(channels, blocks)):
            if i:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers.append(nn.Conv2d(width, c, 3, padding=1))
            layers += [_Residual(c) for _ in range(n)]
            width = c
        layers += [nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(latents)


def load(folder) -> PixelDecoder | None:
    """The distilled decoder a model folder ships (fp32, eval, no gradient to its weights), or None."""
    from safetensors.torch import load_file

    path = Path(folder) / FOLDER
    if not (path / "config.json").is_file():
        return None
    config = json.loads((path / "config.json").read_text())
    decoder = PixelDecoder(config["channels"], config["blocks"], config.get("latent_channels", 4))
    state = load_file(str(path / "model.safetensors"))
    decoder.load_state_dict({k: v.float() for k, v in state.items()})
    return decoder.eval().requires_grad_(False)


def save(decoder: PixelDecoder, folder, info: dict) -> Path:
    """Write `folder/pixel_decoder/` (config, fp16 safetensors, what it was distilled from)."""
    from safetensors.torch import save_file

    path = Path(folder) / FOLDER
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(json.dumps(decoder.config, indent=1) + "\n")
    save_file({k: v.detach().half().contiguous() for k, v in decoder.state_dict().items()}, str(tmp / "model.safetensors"))
    (tmp / "distilled.json").write_text(json.dumps(info, indent=1) + "\n")
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


# ---------------------------------------------------------------------------------------------
# Data: x̂₀ as sampling produces it, and the VAE decoder's picture of it


@torch.no_grad()
def sampled_estimates(pipe, seeds, steps: int = 50, cfg: float = 5.0, batch: int = ESTIMATE_BATCH) -> torch.Tensor:
    """x̂₀ of the conditional row (what `latent()` reads, the runtime's `clean_latent`) at every
    step of unguided runs, with CFG, of the captions of scenes `seeds`; which scene each row
    comes from: `estimate_scenes`."""
    from sgl.runtime.sampler import alpha_bar, clean_latent

    from . import data

    out = []
    scheduler = pipe.scheduler
    size = pipe.unet.config.sample_size
    for start in range(0, len(seeds), batch):
        chunk = seeds[start:start + batch]
        captions = [data.render_scene(s).caption for s in chunk]
        cond = pipe.encode_prompt(captions, "cpu", 1, True, [""] * len(chunk))
        emb = torch.cat([cond[1], cond[0]])
        generator = torch.Generator().manual_seed(int(chunk[0]))
        latents = torch.randn((len(chunk), pipe.unet.config.in_channels, size, size), generator=generator)
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            z = scheduler.scale_model_input(latents, t)
            eps_u, eps_c = pipe.unet(torch.cat([z, z]), t, encoder_hidden_states=emb).sample.chunk(2)
            out.append(clean_latent(z, eps_c, alpha_bar(scheduler, t), "epsilon"))
            latents = scheduler.step(eps_u + cfg * (eps_c - eps_u), t, latents).prev_sample
    return torch.cat(out)


def estimate_scenes(count: int, steps: int, batch: int = ESTIMATE_BATCH) -> torch.Tensor:
    """The index into `seeds` of the scene each row of `sampled_estimates` comes from: chunks of
    `batch` scenes sampled together, every step's rows scene-minor."""
    return torch.cat([torch.arange(start, min(start + batch, count)).repeat(steps)
                      for start in range(0, count, batch)])


@torch.no_grad()
def encoded_renders(pipe, seeds) -> torch.Tensor:
    """Scaled VAE latents of rendered scenes (the clean end of the distribution)."""
    import numpy as np

    from . import data

    images = np.stack([data.render_scene(s).image for s in seeds]).astype(np.float32) / 127.5 - 1
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    return _in_batches(lambda part: pipe.vae.encode(part).latent_dist.mean, x) * pipe.vae.config.scaling_factor


@torch.no_grad()
def vae_pictures(vae, latents: torch.Tensor) -> torch.Tensor:
    from sgl.runtime.sampler import decode_pixels

    return _in_batches(lambda part: decode_pixels(vae, part), latents)


@torch.no_grad()
def _in_batches(fn, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


# ---------------------------------------------------------------------------------------------
# Distillation


def likeness_error(picture: torch.Tensor, reference: torch.Tensor, width: float = 0.15) -> float:
    """Mean relative error of the area alike each palette colour (the `like` intrinsic, as
    `drawn` reads it: `like(pixels(), rgb, 0.15)`) between `picture` and `reference`, over images
    where it is ≥ 2 % of it."""
    from sgl.runtime.evaluate import like

    from .data import PALETTE

    grid, spread = tuple(picture.shape[-2:]), torch.tensor([width], dtype=picture.dtype)
    errors = []
    for rgb in PALETTE.values():
        v = torch.tensor([rgb], dtype=picture.dtype) / 255
        areas = [like(p, v, spread, grid=grid).mean((1, 2)) for p in (picture, reference)]
        shown = areas[1] > 0.02
        if shown.any():
            errors.append(((areas[0] - areas[1]).abs() / areas[1])[shown])
    return float(torch.cat(errors).mean())


def distill(folder=WEIGHTS_DIR, *, scenes: int = 256, renders: int = 1500, iters: int = 4000, batch: int = 64,
            lr: float = 3e-3, noise: float = 0.1, steps: int = 50, seed: int = 0, log=print) -> tuple[PixelDecoder, dict]:
    """Train a PixelDecoder against `folder`'s VAE decoder. Scenes 900000+ (disjoint from the
    training and benchmark seeds); one scene in eight is held out."""
    from sgl.runtime.pipelines import load_pipeline

    torch.manual_seed(seed)
    started = time.time()
    pipe, _ = load_pipeline(str(folder), device="cpu", dtype=torch.float32)
    seeds = list(range(900000, 900000 + scenes))
    log(f"sampling x̂₀ of {scenes} scenes …")
    sampled = sampled_estimates(pipe, seeds, steps=steps)
    clean = encoded_renders(pipe, list(range(910000, 910000 + renders)))
    held = estimate_scenes(len(seeds), steps) % 8 == 7  # every eighth caption
    train_x = torch.cat([sampled[~held], clean[: renders * 7 // 8]])
    test_x = torch.cat([sampled[held], clean[renders * 7 // 8:]])
    # guidance moves x̂₀ off what sampling alone produces: a noisy copy of every training row,
    # pictured by the VAE (so the decoder learns the VAE's response to it, not a denoiser)
    generator = torch.Generator().manual_seed(seed)
    train_x = torch.cat([train_x, train_x + noise * torch.randn(train_x.shape, generator=generator)])
    log(f"decoding {len(train_x) + len(test_x)} estimates with the VAE …")
    train_y, test_y = vae_pictures(pipe.vae, train_x), vae_pictures(pipe.vae, test_x)
    decoder = PixelDecoder()
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=1e-4)
    for it in range(iters):
        for group in optimizer.param_groups:
            group["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * it / iters)))
        pick = torch.randint(len(train_x), (batch,), generator=generator)
        out = decoder(train_x[pick])
        loss = (out - train_y[pick]).abs().mean() + (out - train_y[pick]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if it % 500 == 0 or it == iters - 1:
            pred = _in_batches(decoder, test_x, 256)
            held_l1, held_area = float((pred - test_y).abs().mean()), likeness_error(pred, test_y)
            log(f"iter {it:5d}  loss {loss.item():.4f}  held-out L1 {held_l1:.4f}  likeness area error {held_area:.3f}")
    info = {"from": str(folder), "scenes": scenes, "renders": renders, "iters": iters, "batch": batch, "lr": lr,
            "noise": noise, "steps": steps, "seed": seed, "minutes": round((time.time() - started) / 60, 1),
            "held_out_l1": round(held_l1, 4), "held_out_likeness_area_error": round(held_area, 4),
            "parameters": sum(p.numel() for p in decoder.parameters())}
    return decoder.eval().requires_grad_(False), info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgl.models.shapes.pixel_decoder", description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=str(WEIGHTS_DIR), help="the model folder whose VAE to distil")
    parser.add_argument("--out", default=None, help="where to write pixel_decoder/ (default: --folder)")
    parser.add_argument("--iters", type=int, default=4000)
    parser.add_argument("--scenes", type=int, default=256)
    args = parser.parse_args(argv)
    decoder, info = distill(args.folder, iters=args.iters, scenes=args.scenes)
    path = save(decoder, args.out or args.folder, info)
    print(f"wrote {path}: {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
