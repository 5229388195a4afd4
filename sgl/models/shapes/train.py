"""Train the `shapes` model: `python -m sgl.models.shapes.train [--out .train/run1] [--minutes N] [--resume]`.

Stage 0 renders a cache of scenes (images, object label maps, token positions of object words).
Stage 1 trains the VAE (L1 + L2 reconstruction + a small KL), sets `scaling_factor` from the latent
std and encodes every scene into a latent cache. Stage 2 trains the text encoder and the UNet on
the cached latents with the epsilon loss plus the token-grounding loss (grounding.py), 10 % caption
dropout for classifier-free guidance, AdamW and an EMA of the UNet. Everything is checkpointed to
--out every few minutes; --resume continues from the last checkpoint. Logs go to <out>/log.txt.

`--init DIR` fine-tunes an exported model folder instead of training from scratch: its VAE is kept
(stage 1 is skipped) and stage 2 starts from its UNet and text encoder (used to teach the shipped
model vaguer captions, `--vague`, without repeating hours of CPU training).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .build import ShapesConfig, build_components, save_pipeline
from .grounding import attention_centroid, grounding_loss, install

EVAL_SEED0 = 10_000_000  # held-out seeds for evaluation (training uses 0 … n_scenes-1)
# Where training runs: set by main() from --device (default: CUDA when there is one). Data are
# rendered and cached on the CPU; each batch moves to the device.
DEVICE = torch.device("cpu")


def to_device(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(DEVICE)


def pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1] on the device."""
    return to_device(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def log(out: Path, msg: str):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    with open(out / "log.txt", "a") as f:
        f.write(line + "\n")


def save_png(arr, path, scale=3):
    from PIL import Image

    im = Image.fromarray(arr)
    im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(path)


def atomic_save(obj, path: Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def tokenize(tok, captions, max_len):
    return tok(list(captions), padding="max_length", max_length=max_len, truncation=True, return_tensors="pt").input_ids


# ---------------------------------------------------------------------------------------------
# stage 0

def load_cache(path: Path, n: int, workers: int, vague: float | tuple[float, float] = 0.0):
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    c = data.build_cache_parallel(0, n, workers=workers, vague=vague)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **c)
    os.replace(tmp, path)
    return c


# ---------------------------------------------------------------------------------------------
# stage 1: VAE

def train_vae(args, out: Path, comps, cache, cfg: ShapesConfig):
    vae = comps["vae"]
    ck = out / "vae.pt"
    state = {"step": 0, "seconds": 0.0}
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    if ck.exists():
        s = torch.load(ck, weights_only=False, map_location=DEVICE)
        vae.load_state_dict(s["vae"])
        opt.load_state_dict(s["opt"])
        state = s["state"]
        if state.get("done"):
            if state["seconds"] >= args.vae_minutes * 60 - 5:
                return state
            state["done"] = False  # more VAE time was asked for: continue, re-encode the latents
            (out / "latents.npy").unlink(missing_ok=True)
    images = cache["images"]
    rng = np.random.default_rng(state["step"] + 1)
    t_last_ck = time.time()
    t0 = time.time() - state["seconds"]
    vae.train()
    while time.time() - t0 < args.vae_minutes * 60:
        idx = rng.integers(0, len(images), args.vae_batch)
        x = pixels(images[idx])
        if args.vae_crop and args.vae_crop < x.shape[-1] and time.time() - t0 < (args.vae_minutes - 3) * 60:
            # random crops (the VAE is convolutional): 4x cheaper steps; full images at the end
            f = 2 ** (len(cfg.vae_channels) - 1)
            oy, ox = (rng.integers(0, (x.shape[-1] - args.vae_crop) // f + 1, 2) * f).tolist()
            x = x[:, :, oy:oy + args.vae_crop, ox:ox + args.vae_crop]
        post = vae.encode(x).latent_dist
        z = post.sample()
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        l2 = (rec - x).pow(2).mean()
        kl = post.kl().mean() / (x[0].numel())
        loss = l1 + l2 + args.vae_kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        if state["step"] % 50 == 0:
            log(out, f"vae step {state['step']} l1 {l1.item():.4f} l2 {l2.item():.5f} kl {kl.item():.3f} "
                     f"zstd {z.std().item():.3f} t {time.time() - t0:.0f}s")
        if time.time() - t_last_ck > 120:
            state["seconds"] = time.time() - t0
            atomic_save({"vae": vae.state_dict(), "opt": opt.state_dict(), "state": state}, ck)
            t_last_ck = time.time()
    vae.eval()
    # reconstructions of held-out scenes + scaling factor
    with torch.no_grad():
        ev = np.stack([data.render_scene(EVAL_SEED0 + i).image for i in range(16)])
        x = pixels(ev)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
        err = (rec - x).abs().mean().item() * 127.5
        r8 = to_uint8(rec)
        save_png(data.grid(list(ev) + list(r8), ncol=16), out / "vae_recon.png")
        zs = []
        for i in range(0, min(2048, len(images)), 256):
            xb = pixels(images[i:i + 256])
            zs.append(vae.encode(xb).latent_dist.mode())
        std = torch.cat(zs).std().item()
    state["scaling_factor"] = 1.0 / std
    state["done"] = True
    state["seconds"] = time.time() - t0
    log(out, f"vae done: {state['step']} steps, held-out L1 error {err:.2f}/255, latent std {std:.4f}")
    atomic_save({"vae": vae.state_dict(), "opt": opt.state_dict(), "state": state}, ck)
    return state


def encode_latents(out: Path, vae, cache, scaling: float):
    path = out / "latents.npy"
    if path.exists():
        return np.load(path)
    images = cache["images"]
    lat = []
    with torch.no_grad():
        for i in range(0, len(images), 512):
            xb = pixels(images[i:i + 512])
            lat.append((vae.encode(xb).latent_dist.mode() * scaling).half().cpu().numpy())
    lat = np.concatenate(lat)
    np.save(out / "latents.tmp.npy", lat)
    os.replace(out / "latents.tmp.npy", path)
    return lat


# ---------------------------------------------------------------------------------------------
# stage 2: text encoder + UNet

class EMA:
    def __init__(self, model, decay):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model, decay=None):
        d = self.decay if decay is None else decay
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)


def eval_set(tok, cfg, vae, n=64):
    scenes = [data.render_scene(EVAL_SEED0 + 1000 + i) for i in range(n)]
    x = pixels(np.stack([s.image for s in scenes]))
    with torch.no_grad():
        lat = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    ids = to_device(tokenize(tok, [s.caption for s in scenes], cfg.max_tokens))
    shape_pos = to_device(torch.tensor([data.word_positions(s.objects)[0]["shape"] for s in scenes]))
    cent = to_device(torch.tensor([s.objects[0].centroid for s in scenes]))
    return {"scenes": scenes, "lat": lat, "ids": ids, "shape_pos": shape_pos, "cent": cent}


@torch.no_grad()
def eval_localisation(unet, te, sched, ev, store, t_values=(200, 500, 800)):
    """Attention-centroid error (|dx| + |dy|) of the first object's shape word on a noised latent,
    16x16 cross-attention layers averaged, over several noise levels."""
    g = torch.Generator().manual_seed(0)
    enc = te(ev["ids"])[0]
    errs = {}
    for t in t_values:
        noise = to_device(torch.randn(ev["lat"].shape, generator=g))
        tt = torch.full((len(noise),), t, dtype=torch.long, device=DEVICE)
        zt = sched.add_noise(ev["lat"], noise, tt)
        store.clear()
        unet(zt, tt, enc)
        maps = [A for A in store.values() if A.shape[1] == max(B.shape[1] for B in store.values())]
        A = torch.stack(maps).mean(0)  # (B, N, T)
        a = A.gather(2, ev["shape_pos"].view(-1, 1, 1).expand(-1, A.shape[1], 1))[..., 0]
        c = attention_centroid(a)
        errs[t] = (c - ev["cent"]).abs().sum(1).mean().item()
    return errs


@torch.no_grad()
def sample_grid(unet, te, vae, tok, sched_cfg, cfg, prompts, steps=25, cfg_scale=5.0, seed=0):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(sched_cfg)
    sched.set_timesteps(steps)
    n = len(prompts)
    ids = to_device(tokenize(tok, list(prompts) + [""] * n, cfg.max_tokens))
    enc = te(ids)[0]
    g = torch.Generator().manual_seed(seed)
    z = to_device(torch.randn((n, cfg.latent_channels, cfg.latent_size, cfg.latent_size), generator=g))
    for t in sched.timesteps:
        e = unet(torch.cat([z, z]), t, enc).sample
        ec, eu = e.chunk(2)
        z = sched.step(eu + cfg_scale * (ec - eu), t, z).prev_sample
    img = vae.decode(z / vae.config.scaling_factor).sample
    return to_uint8(img)


def learning_rate(args, step: int) -> float:
    """Linear warm-up, constant, then (when --decay-end is set) cosine down to --lr-end between
    --decay-start and --decay-end: a late decay cleans up samples of a run trained at constant lr."""
    lr = args.lr * min(1.0, (step + 1) / args.warmup)
    if args.decay_end and step > args.decay_start:
        u = min(1.0, (step - args.decay_start) / max(1, args.decay_end - args.decay_start))
        lr = args.lr_end + (args.lr - args.lr_end) * 0.5 * (1 + math.cos(math.pi * u))
    return lr


# what `--init` reads from an exported folder (sgl/models/shapes/export.py writes them)
INIT_FILES = ("shapes_config.json", "vae", "unet", "text_encoder")


def load_init(folder: Path, comps) -> dict:
    """Load the weights of an exported model folder into freshly built components (in place)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    comps["vae"].load_state_dict(AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).state_dict())
    comps["unet"].load_state_dict(
        UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).state_dict())
    comps["text_encoder"].load_state_dict(
        CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32).state_dict())
    info = folder / "training.json"
    return json.loads(info.read_text()) if info.exists() else {}


def train_unet(args, out: Path, comps, cache, latents, cfg: ShapesConfig):
    unet, te, tok, vae, sched = comps["unet"], comps["text_encoder"], comps["tokenizer"], comps["vae"], comps["scheduler"]
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ck = out / "unet.pt"
    state = {"step": 0, "seconds": 0.0}
    ema = EMA(unet, args.ema)
    ema_te = EMA(te, args.ema)
    if ck.exists():
        s = torch.load(ck, weights_only=False, map_location=DEVICE)
        unet.load_state_dict(s["unet"])
        te.load_state_dict(s["te"])
        opt.load_state_dict(s["opt"])
        ema.shadow = s["ema"]
        ema_te.shadow = s["ema_te"]
        state = s["state"]
        log(out, f"resumed stage 2 at step {state['step']}")
    store: dict = {}
    install(unet, store)
    ev = eval_set(tok, cfg, vae)

    ids_all = tokenize(tok, cache["captions"], cfg.max_tokens)
    empty_ids = tokenize(tok, [""], cfg.max_tokens)[0]
    labels_all = torch.from_numpy(cache["labels"])
    tokpos_all = torch.from_numpy(cache["tokpos"].astype(np.int64))
    lat_all = torch.from_numpy(latents)
    alphas = sched.alphas_cumprod.to(DEVICE)
    n = len(lat_all)

    rng = np.random.default_rng(1000 + state["step"])
    t0 = time.time() - state["seconds"]
    t_ck = time.time()
    acc = {"eps": 0.0, "gr": 0.0, "inside": 0.0, "k": 0}
    prompts = ["a red circle", "a blue square and a yellow star", "a small green triangle and a big purple circle",
               "an orange star and a red square and a blue triangle", "a big yellow square", "a purple star and a green circle",
               "a small blue circle and an orange triangle", "a red triangle and a yellow circle and a small green square"]
    unet.train(); te.train()
    while args.minutes <= 0 or time.time() - t0 < args.minutes * 60:
        ts = time.time()
        idx = torch.from_numpy(rng.integers(0, n, args.batch))
        z0 = to_device(lat_all[idx].float())
        ids = ids_all[idx].clone()
        keep = torch.from_numpy(rng.random(args.batch) >= args.drop)
        ids[~keep] = empty_ids
        ids, keep = to_device(ids), to_device(keep)
        noise = torch.randn_like(z0)
        t = to_device(rng.integers(0, 1000, args.batch))
        ab = alphas[t].view(-1, 1, 1, 1)
        zt = ab.sqrt() * z0 + (1 - ab).sqrt() * noise
        store.clear()
        enc = te(ids)[0]
        pred = unet(zt, t, enc).sample
        l_eps = F.mse_loss(pred, noise)
        l_gr, inside = grounding_loss(store, to_device(labels_all[idx]), to_device(tokpos_all[idx]), keep,
                                      min_res=args.ground_min_res, spread=args.ground_spread)
        loss = l_eps + args.ground * l_gr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lr = learning_rate(args, state["step"])
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        opt.step()
        state["step"] += 1
        ema.update(unet, min(args.ema, (1 + state["step"]) / (10 + state["step"])))
        ema_te.update(te, min(args.ema, (1 + state["step"]) / (10 + state["step"])))
        acc["eps"] += l_eps.item(); acc["gr"] += l_gr.item(); acc["inside"] += float(inside if inside is not None else 0); acc["k"] += 1
        step = state["step"]
        if step % args.log_every == 0:
            k = acc["k"]
            log(out, f"step {step} eps {acc['eps'] / k:.4f} ground {acc['gr'] / k:.4f} inside {acc['inside'] / k:.3f} "
                     f"lr {lr:.2e} {time.time() - ts:.2f}s/step t {time.time() - t0:.0f}s")
            acc = {"eps": 0.0, "gr": 0.0, "inside": 0.0, "k": 0}
        if step % args.eval_every == 0 or time.time() - t_ck > args.ckpt_minutes * 60:
            state["seconds"] = time.time() - t0
            atomic_save({"unet": unet.state_dict(), "te": te.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow,
                         "ema_te": ema_te.shadow, "state": state, "cfg": cfg.to_json(),
                         "vae": vae.state_dict()}, ck)
            t_ck = time.time()
            if step % args.eval_every == 0:
                # evaluate with the EMA weights
                live_u = copy.deepcopy(unet.state_dict()); live_t = copy.deepcopy(te.state_dict())
                unet.load_state_dict(ema.shadow); te.load_state_dict(ema_te.shadow)
                unet.eval(); te.eval()
                errs = eval_localisation(unet, te, sched, ev, store)
                log(out, f"eval step {step} localisation error (EMA, |dx|+|dy|) " + " ".join(f"t{k}={v:.3f}" for k, v in errs.items()))
                if step % (args.eval_every * 4) == 0:
                    imgs = sample_grid(unet, te, vae, tok, sched.config, cfg, prompts)
                    save_png(data.grid(imgs, ncol=8), out / f"samples_{step:06d}.png")
                unet.load_state_dict(live_u); te.load_state_dict(live_t)
                unet.train(); te.train()
                store.clear()
    state["seconds"] = time.time() - t0
    atomic_save({"unet": unet.state_dict(), "te": te.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow,
                 "ema_te": ema_te.shadow, "state": state, "cfg": cfg.to_json(), "vae": vae.state_dict()}, ck)
    log(out, f"stage 2 finished at step {state['step']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".train/run1")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--minutes", type=float, default=90, help="stage-2 training time (<= 0: until killed)")
    p.add_argument("--vae-minutes", type=float, default=30)
    p.add_argument("--n-scenes", type=int, default=60000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vae-batch", type=int, default=32)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--vae-crop", type=int, default=32, help="train the VAE on random crops of this size (0: full images)")
    p.add_argument("--vae-kl", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--decay-start", type=int, default=0, help="step where the cosine lr decay begins")
    p.add_argument("--decay-end", type=int, default=0, help="step where it reaches --lr-end (0: no decay)")
    p.add_argument("--lr-end", type=float, default=2.5e-5)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--drop", type=float, default=0.1, help="caption dropout (classifier-free guidance)")
    p.add_argument("--ground", type=float, default=0.1, help="weight of the token-grounding loss")
    p.add_argument("--ground-min-res", type=int, default=8)
    p.add_argument("--ground-spread", type=float, default=0.0,
                   help="weight, inside the grounding loss, of KL(mask || attention): spread each word's "
                        "attention over its whole object (grounding.py)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--ckpt-minutes", type=float, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    p.add_argument("--init", metavar="DIR", help="fine-tune this exported model folder (its VAE is kept)")
    p.add_argument("--vague", type=float, default=0.0,
                   help="probability that a caption leaves out an object's size word, and its colour word")
    p.add_argument("--vague-size", type=float, default=None,
                   help="probability for the size word alone (default: --vague)")
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.init:
        missing = [n for n in INIT_FILES if not (Path(args.init) / n).exists()]
        if missing:
            p.error(f"--init {args.init}: not an exported shapes model folder (missing {', '.join(missing)}); "
                    "export one with `python -m sgl.models.shapes.export`")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if args.resume and cfg_path.exists():
        cfg = ShapesConfig.from_json(cfg_path.read_text())
    elif args.init:
        cfg = ShapesConfig.from_json((Path(args.init) / "shapes_config.json").read_text())
        cfg_path.write_text(cfg.to_json())
    else:
        cfg = ShapesConfig()
        cfg_path.write_text(cfg.to_json())
    (out / "args.json").write_text(json.dumps(vars(args), indent=1))
    log(out, f"start on {DEVICE} {vars(args)}")
    comps = build_components(cfg)
    for name in ("vae", "text_encoder", "unet"):
        comps[name].to(DEVICE)
    if args.init and not (out / "unet.pt").exists():
        info = load_init(Path(args.init), comps)
        log(out, f"initialised from {args.init} {info}")
        if not (out / "vae.pt").exists():  # the folder's VAE is done: stage 1 is skipped
            atomic_save({"vae": comps["vae"].state_dict(), "opt": {}, "state": {
                "step": 0, "seconds": 0.0, "done": True, "init": str(args.init),
                "scaling_factor": cfg.vae_scaling_factor}}, out / "vae.pt")
    vague = args.vague if args.vague_size is None else (args.vague_size, args.vague)
    name = f"cache_{args.n_scenes}" + (f"_vague{args.vague:g}" if args.vague else "")
    name += f"_size{args.vague_size:g}" if args.vague_size is not None else ""
    cache = load_cache(out.parent / f"{name}.npz", args.n_scenes, args.threads, vague)
    log(out, f"cache: {len(cache['images'])} scenes")
    if args.init:
        kept = torch.load(out / "vae.pt", weights_only=False, map_location=DEVICE)
        comps["vae"].load_state_dict(kept["vae"])
        vstate = kept["state"]
    else:
        vstate = train_vae(args, out, comps, cache, cfg)
    cfg.vae_scaling_factor = vstate["scaling_factor"]
    comps["vae"].register_to_config(scaling_factor=cfg.vae_scaling_factor)
    cfg_path.write_text(cfg.to_json())
    comps["vae"].eval().requires_grad_(False)
    latents = encode_latents(out, comps["vae"], cache, cfg.vae_scaling_factor)
    log(out, f"latents {latents.shape} std {latents.astype(np.float32).std():.3f}")
    train_unet(args, out, comps, cache, latents, cfg)


if __name__ == "__main__":
    main()
