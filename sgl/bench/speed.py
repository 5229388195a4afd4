"""`sgl bench speed`: what self-guidance costs, as ratios to plain diffusers sampling.

Three ways to make one image with the same random-weight model of a real architecture
(timing does not depend on the weights, so nothing is downloaded):

  plain        `pipe(prompt, num_inference_steps, guidance_scale)` — diffusers alone
  sgl edit     an SGL move + keep-others program: the original run and the guided run together
  sgl cached   the same program again with the original run cached (the REPL's case)

Printed as a table (seconds, ratio to plain, peak GPU memory) and optionally written as JSON.
Target (issue 4): sgl cached / plain ≤ 2.0.

`--arch shapes` times the embedded model with its shipped weights instead: `plain` is one 50-step
image (CFG 5) and each example program of examples/ (a checkout's) is one full edit — its
original and its guided run from an empty cache, as a first `sgl run` does them, model loaded.
Targets (issue 5, on 2 CPU cores): plain ≤ 3 s, a full edit ≤ 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

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


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHAPES_PROMPT = "a red circle and a blue square"
SHAPES_TARGETS = {"plain": 3.0, "edit": 10.0}   # seconds, issue 5


def run_shapes_speed(steps: int = 50, repeats: int = 3, programs: list[str] | None = None) -> dict:
    """Median seconds of a plain image and of each example's full edit on the shipped `shapes`
    model, on the CPU, with torch's default threads."""
    import sgl
    from sgl.runtime.cache import RunCache
    from sgl.runtime.pipelines import load_pipeline

    paths = [Path(p) for p in programs] if programs else sorted(EXAMPLES.glob("*.sgl"))
    if not paths:
        raise SystemExit(f"no example programs in {EXAMPLES} (`--arch shapes` runs in a checkout)")
    pipe, _ = load_pipeline("shapes", device="cpu")

    def plain():
        pipe(SHAPES_PROMPT, num_inference_steps=steps, guidance_scale=5.0,
             generator=torch.Generator().manual_seed(0))

    def median(fn) -> float:
        return statistics.median(_timed(fn, "cpu")[0] for _ in range(repeats))

    plain()  # warm-up
    rows = {"plain": (median(plain), SHAPES_TARGETS["plain"])}
    for path in paths:
        program = sgl.compile(path, steps=steps)
        program.run(pipe=pipe, progress=False, cache=RunCache())  # warm-up: images loaded, kernels
        rows[f"{path.stem} (edit)"] = (median(lambda: program.run(pipe=pipe, progress=False, cache=RunCache())),
                                       SHAPES_TARGETS["edit"])
    base = rows["plain"][0]
    return {
        "arch": "shapes", "size": 64, "steps": steps, "device": "cpu", "dtype": "float32", "device_name": "cpu",
        "threads": torch.get_num_threads(), "repeats": repeats,
        "rows": {name: {"seconds": round(t, 3), "ratio": round(t / base, 3), "peak_gib": None,
                        "target_s": target, "met": t <= target} for name, (t, target) in rows.items()},
        "target": {"plain (s)": SHAPES_TARGETS["plain"], "full edit (s)": SHAPES_TARGETS["edit"]},
    }


def format_table(result: dict) -> str:
    weights = "shipped weights" if result["arch"] == "shapes" else "random weights"
    threads = f", {result['threads']} threads, median of {result['repeats']}" if "threads" in result else ""
    width = max(12, *(len(name) + 2 for name in result["rows"]))
    lines = [f"speed: {result['arch']} ({weights}), {result['size']} px, {result['steps']} steps, "
             f"{result['device_name']}, {result['dtype']}{threads}",
             f"{'':<{width}}{'seconds':>10}{'× plain':>10}{'peak GiB':>10}"]
    for name, row in result["rows"].items():
        peak = "—" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
        target = (f"   ≤ {row['target_s']:g} s {'✔' if row['met'] else '✘'}") if "target_s" in row else ""
        lines.append(f"{name:<{width}}{row['seconds']:>10.2f}{row['ratio']:>10.2f}{peak:>10}{target}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sgl bench speed", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("sd15", "sdxl", "tiny", "shapes"), default="sd15",
                        help="a random-weight architecture, or the embedded model with its weights (shapes)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None)
    parser.add_argument("--repeats", type=int, default=3, help="shapes: timed runs of each row (the median)")
    parser.add_argument("--program", dest="programs", action="append", metavar="FILE",
                        help="shapes: time this program instead of every example (repeatable)")
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.arch == "shapes":
        result = run_shapes_speed(args.steps, args.repeats, args.programs)
    else:
        result = run_speed_bench(args.arch, args.size, args.steps, args.device, args.dtype)
    return publish(result, format_table(result), args.json_path)


if __name__ == "__main__":
    raise SystemExit(main())
