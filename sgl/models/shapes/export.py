"""Export trained `shapes` weights: `python -m sgl.models.shapes.export [--run .train/run1] [--out DIR]`.

Reads the stage-2 checkpoint of a training run (EMA weights of the UNet and text encoder, the
trained VAE) and writes a Stable Diffusion folder with fp16 safetensors (default: the shipped
folder sgl/models/shapes/weights/), plus `training.json` (step, training time, config).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def export(run=".train/run1", out=WEIGHTS_DIR, ema: bool = True, fp16: bool = True) -> Path:
    import torch

    from .build import ShapesConfig, build_components, save_pipeline

    run, out = Path(run), Path(out)
    ck = torch.load(run / "unet.pt", map_location="cpu", weights_only=False)
    cfg = ShapesConfig.from_json(ck["cfg"])
    comps = build_components(cfg)
    comps["unet"].load_state_dict(ck["ema"] if ema else ck["unet"])
    comps["text_encoder"].load_state_dict(ck["ema_te"] if ema else ck["te"])
    comps["vae"].load_state_dict(ck["vae"])
    comps["vae"].register_to_config(scaling_factor=cfg.vae_scaling_factor)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_pipeline(comps, tmp, fp16=fp16, cfg=cfg)
    info = {"step": ck["state"]["step"], "stage2_minutes": round(ck["state"]["seconds"] / 60, 1),
            "ema": ema, "exported": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "run": str(run)}
    vae_ck = run / "vae.pt"
    if vae_ck.exists():
        vs = torch.load(vae_ck, map_location="cpu", weights_only=False)["state"]
        info["vae_steps"] = vs["step"]
        info["vae_minutes"] = round(vs["seconds"] / 60, 1)
        if vs.get("init"):  # a fine-tuning run (--init): say what it started from
            info["fine_tuned_from"] = vs["init"]
            previous = Path(vs["init"]) / "training.json"
            if previous.exists():
                info["base"] = json.loads(previous.read_text())
    args_file = run / "args.json"
    if args_file.exists():
        args = json.loads(args_file.read_text())
        info["vague"] = args.get("vague", 0.0)
        if args.get("vague_size") is not None:
            info["vague_size"] = args["vague_size"]
        if args.get("ground_spread"):
            info["ground_spread"] = args["ground_spread"]
    (tmp / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    # the guidance tuned on `sgl bench edits` stays until re-tuned: the target folder's, else (a
    # fine-tune exported to a new folder) that of the folder the fine-tune started from
    candidates = [out / "sgl.json"]
    if info.get("fine_tuned_from"):
        candidates.append(Path(info["fine_tuned_from"]) / "sgl.json")
    found = next((f for f in candidates if f.is_file()), None)
    if found is not None:
        shutil.copy(found, tmp / "sgl.json")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=".train/run1")
    p.add_argument("--out", default=str(WEIGHTS_DIR))
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--fp32", action="store_true")
    a = p.parse_args(argv)
    out = export(a.run, a.out, ema=not a.no_ema, fp16=not a.fp32)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"exported to {out} ({size / 1e6:.1f} MB); its VAE is new: distil the decoder `pixels()` reads with "
          f"python -m sgl.models.shapes.pixel_decoder --folder {out}")


if __name__ == "__main__":
    main()
