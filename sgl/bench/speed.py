"""`sgl bench speed`: what self-guidance costs, as ratios to plain diffusers sampling.

Three ways to make one image with the same random-weight model of a real architecture
(timing does not depend on the weights, so nothing is downloaded):

  plain        `pipe(prompt, num_inference_steps, guidance_scale)` — diffusers alone
  sgl edit     an SGL move + keep-others program: the original run and the guided run together
  sgl cached   the same program again with the original run cached (the REPL's case)

Printed as a table (seconds, ratio to plain, peak GPU memory) and optionally written as JSON.
Target (issue 4): sgl cached / plain ≤ 2.0.
"""

from __future__ import annotations

import argparse
import time

import torch

from sgl.bench import publish

PROMPT = "a photo of a dog and a cat on the beach"
PROGRAM = f'''
prompt "{PROMPT}"
use edits
move(dog, (0.2, 0))
keep_others(dog)
'''
WORDS = ["a", "photo", "of", "dog", "and", "cat", "on", "the", "beach"]


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def _text_encoder(hidden: int, layers: int, heads: int, projection: bool = False, vocab: int = 512):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                            projection_dim=hidden, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def build_pipeline(arch: str):
    """A random-weight pipeline with the architecture of SD 1.5, SDXL, or a tiny one."""
    from diffusers import (AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline,
                           UNet2DConditionModel)

    from sgl.runtime.tokens import word_tokenizer

    torch.manual_seed(0)
    tokenizer = word_tokenizer(WORDS, max_length=77)
    assert len(tokenizer) <= 512
    if arch == "tiny":
        unet = UNet2DConditionModel(sample_size=16, block_out_channels=(32, 64), layers_per_block=1,
                                    norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4,
                                    down_block_types=("CrossAttnDownBlock2D",) * 2,
                                    up_block_types=("CrossAttnUpBlock2D",) * 2)
        vae = AutoencoderKL(block_out_channels=(16, 32), norm_num_groups=8, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        return StableDiffusionPipeline(vae=vae, text_encoder=_text_encoder(32, 2, 4), tokenizer=tokenizer, unet=unet,
                                       scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    if arch == "sd15":
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        return StableDiffusionPipeline(vae=vae, text_encoder=_text_encoder(768, 12, 12), tokenizer=tokenizer,
                                       unet=unet, scheduler=_scheduler(), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    if arch == "sdxl":
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
            cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
        return StableDiffusionXLPipeline(
            vae=vae, text_encoder=_text_encoder(768, 12, 12), text_encoder_2=_text_encoder(1280, 32, 20, True),
            tokenizer=tokenizer, tokenizer_2=word_tokenizer(WORDS, max_length=77), unet=unet,
            scheduler=_scheduler(), add_watermarker=False)
    raise ValueError(f"unknown architecture {arch!r} (sd15, sdxl, tiny)")


def _timed(fn, device: str) -> tuple[float, float | None]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2 ** 30
    return time.perf_counter() - start, None


def run_speed_bench(arch: str = "sd15", size: int = 512, steps: int = 50, device: str | None = None,
                    dtype: str | None = None) -> dict:
    import sgl
    from sgl.runtime.cache import RunCache

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        dtype or ("fp16" if device.startswith("cuda") else "fp32")]
    pipe = build_pipeline(arch).to(device=device, dtype=torch_dtype)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.eval().requires_grad_(False)
    if arch == "tiny":
        size = min(size, 32)
    program = sgl.compile(PROGRAM, steps=steps, resolution=size, cfg=7.5, seed=0)

    def plain():
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.5, height=size, width=size,
             generator=torch.Generator(device="cpu").manual_seed(0))

    cache = RunCache()
    rows = {}
    plain()  # warm-up (kernels, allocator)
    rows["plain"] = _timed(plain, device)
    rows["sgl edit"] = _timed(lambda: program.run(pipe=pipe, progress=False, cache=cache), device)
    rows["sgl cached"] = _timed(lambda: program.run(pipe=pipe, progress=False, cache=cache), device)
    base = rows["plain"][0]
    return {
        "arch": arch, "size": size, "steps": steps, "device": device, "dtype": str(torch_dtype).replace("torch.", ""),
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "rows": {name: {"seconds": round(t, 3), "ratio": round(t / base, 3),
                        "peak_gib": None if m is None else round(m, 3)} for name, (t, m) in rows.items()},
        "target": {"sgl cached / plain": 2.0},
    }


def format_table(result: dict) -> str:
    lines = [f"speed: {result['arch']} (random weights), {result['size']} px, {result['steps']} steps, "
             f"{result['device_name']}, {result['dtype']}",
             f"{'':<12}{'seconds':>10}{'× plain':>10}{'peak GiB':>10}"]
    for name, row in result["rows"].items():
        peak = "—" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
        lines.append(f"{name:<12}{row['seconds']:>10.2f}{row['ratio']:>10.2f}{peak:>10}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sgl bench speed", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("sd15", "sdxl", "tiny"), default="sd15")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None)
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = run_speed_bench(args.arch, args.size, args.steps, args.device, args.dtype)
    return publish(result, format_table(result), args.json_path)


if __name__ == "__main__":
    raise SystemExit(main())
