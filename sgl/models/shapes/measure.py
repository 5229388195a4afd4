"""Pixel measurements on images of coloured shapes, and the quality numbers of the `shapes` model.

`segment(image)` finds the objects of an RGB image by colour: every pixel is given the nearest
palette colour if it lies within `threshold` (RGB distance) of it and is closer to it than to the
background (estimated from the border pixels); per colour word it keeps the connected blob with
the most interior pixels (so anti-aliased fringes, e.g. the purplish rim of a blue shape on grey,
are not objects) and reports presence, centroid (x right, y down, in [0, 1]), area fraction, the
mask, and a shape guess (the rendered outline that fits the blob best). `cleanliness(image)` is the
high-frequency energy (lower is cleaner).

`python -m sgl.models.shapes.measure [--model DIR] [--n 50] [--json PATH]` measures the model:
presence rate of every prompted object over N held-out scenes' captions (unguided, DDIM 50, CFG),
shape accuracy, attention localisation error, the same scenes with captions that name only the
shapes (are all objects drawn; which colours and sizes the model picks), whether the size SGL
reads follows the drawn size (`size_readout`), how much of each object its attention covers
(`attention_extent`), and the time of one 50-step generation.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .data import PALETTE
from . import data

EVAL_SEED0 = 10_000_000  # the trainer's held-out seeds start here
MEASURE_SEED0 = EVAL_SEED0 + 500_000


@dataclass
class Blob:
    colour: str
    present: bool
    centroid: tuple[float, float] = (float("nan"), float("nan"))
    area: float = 0.0
    mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def shape(self) -> str | None:
        """The rendered shape whose outline fits the blob best (`guess_shape`; computed when
        asked: the benchmark segments many pictures and needs no blob's shape alone)."""
        return guess_shape(self.mask) if self.present else None


def background_colour(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return np.median(border, axis=0)


def colour_labels(image: np.ndarray, threshold: float = 90.0, colours=None) -> tuple[np.ndarray, list[str]]:
    """(labels HxW int: -1 background/unknown, k = index into the returned colour list, colours).

    A pixel p is explained as a blend bg + a·(c_k − bg) of the background and palette colour k
    (a from the projection); it gets the colour with the smallest residual among those with
    a ≥ 0.45 (about half covered: the rule that defines the rendered masks, with room for rounding), if that residual
    is below `threshold`/2 and p lies within `threshold` of c_k.
    """
    colours = list(colours or PALETTE)
    img = np.asarray(image, np.float32)[..., :3]
    pal = np.asarray([PALETTE[c] for c in colours], np.float32)  # K 3
    bg = background_colour(img)
    dirs = pal - bg  # K 3
    rel = img - bg  # H W 3
    a = (rel @ dirs.T) / (dirs ** 2).sum(1)  # H W K
    resid = np.linalg.norm(rel[:, :, None, :] - a[..., None] * dirs[None, None], axis=-1)
    dist = np.linalg.norm(img[:, :, None, :] - pal[None, None], axis=-1)
    ok = (a >= 0.45) & (resid < threshold / 2) & (dist < threshold * (1.0 + (1 - np.clip(a, 0, 1)) * 4))
    score = np.where(ok, resid, np.inf)
    k = score.argmin(-1)
    lab = np.where(np.isfinite(score.min(-1)), k, -1)
    return lab, colours


def core(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` whose four neighbours are in it too (anti-aliased edge fringes have none)."""
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """The 4-connected components of `mask`, those with the most core pixels first."""
    h, w = mask.shape
    inner = core(mask)
    seen = np.zeros_like(mask, bool)
    found: list[tuple[int, np.ndarray]] = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        comp = []
        q = deque([(y0, x0)])
        seen[y0, x0] = True
        while q:
            y, x = q.popleft()
            comp.append((y, x))
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    q.append((yy, xx))
        out = np.zeros_like(mask, bool)
        ys, xs = zip(*comp)
        out[list(ys), list(xs)] = True
        found.append((int(inner[out].sum()), out))
    found.sort(key=lambda sc: -sc[0])  # stable: among equals, the first in scan order
    return [m for _, m in found]


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    """The 4-connected component of `mask` with the most core pixels."""
    comps = _components(mask)
    return comps[0] if comps else np.zeros_like(mask, bool)


@functools.cache
def _unit_area(shape: str) -> float:
    """Pixels a rendered `shape` of radius r covers, per r² (the generator's drawing rule)."""
    return float((data._coverage(shape, 32, 32, 20, 64) >= 0.5).sum()) / 400.0


# How far a template may be stretched (radius factors) and shifted (pixels) to fit a blob.
_TEMPLATE_RADII = (0.9, 1.0, 1.1)
_TEMPLATE_SHIFTS = (-1, 0, 1)


def shape_cost(mask: np.ndarray, shape: str) -> float:
    """How far a blob is from `shape`: 1 − the best intersection over union of the blob with the
    shape drawn as the generator draws it (upright, `data._coverage` ≥ ½), at the blob's centroid
    and area, its radius stretched ×0.9–1.1 and its centre shifted up to a pixel. The whole
    outline is compared, so a blurred star (its arms filled in, its convex hull a pentagon) is
    still closer to a star than to a triangle; two summary features of the blob (bounding-box fill
    and solidity) told such a star from a triangle wrongly, confidently, and scored correct
    recolourings as failures (session 22: 4 of 64 layout + appearance originals)."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 4:
        return 1.0
    cx, cy = float(xs.mean()) + 0.5, float(ys.mean()) + 0.5
    r0 = float(np.sqrt(len(ys) / _unit_area(shape)))
    # a window holding the blob and every template tried (the triangle's centroid lies r/4 below
    # the centre of its drawing)
    reach = int(np.ceil(1.1 * r0 * 1.3)) + 2
    y0, y1 = min(int(ys.min()), int(cy) - reach), max(int(ys.max()) + 1, int(cy) + reach)
    x0, x1 = min(int(xs.min()), int(cx) - reach), max(int(xs.max()) + 1, int(cx) + reach)
    side = max(y1 - y0, x1 - x0)
    window = np.zeros((side, side), bool)
    window[ys - y0, xs - x0] = True
    best = 0.0
    for f in _TEMPLATE_RADII:
        r = r0 * f
        lift = 0.25 * r if shape == "triangle" else 0.0
        for dx in _TEMPLATE_SHIFTS:
            for dy in _TEMPLATE_SHIFTS:
                t = data._coverage(shape, cx - x0 + dx, cy - y0 + dy - lift, r, side) >= 0.5
                best = max(best, float((t & window).sum()) / float((t | window).sum()))
    return 1.0 - best


def _fits(masks: list, shapes) -> list[dict[str, float]]:
    """Per blob, the `shape_cost` of each word of `shapes` (the expensive part: computed once)."""
    return [{s: shape_cost(m, s) for s in shapes} for m in masks]


def _order_costs(fits: list[dict[str, float]], shapes: list[str]) -> dict[tuple[str, ...], float]:
    """For every assignment of `shapes` (distinct words) to the blobs of `fits` (as many), the
    summed cost of the blobs."""
    return {order: sum(fit[s] for fit, s in zip(fits, order)) for order in itertools.permutations(shapes)}


def match_shapes(masks: list, shapes: list[str]) -> list[str]:
    """The assignment of `shapes` (distinct words) to `masks` (as many) whose outlines fit the
    rendered shapes best: more reliable than guessing each blob's shape alone, because only the
    order of two known shapes has to come out right."""
    costs = _order_costs(_fits(masks, shapes), shapes)
    return list(min(costs, key=costs.get))


# Blobs are told apart by their shapes when each word fits its blob within this much of the word
# that fits that blob best, and every other order of the words fits the blobs worse by at least
# this much (`shape_cost`, summed over the blobs). Rendered shapes fit their own word better than
# any other by 0.13 or more (a circle and a square: 0.13–0.16). On 192 model-drawn pairs of known
# shapes (colour-named captions, session 22) every pair was matched right and no margin from 0.03
# up told a swapped pair apart; 98 % of the 399 blobs fit their own word within 0.08 of the best
# (the rest: small stars the model drew as round blobs).
SHAPE_MARGIN = 0.08


def shapes_told_apart(masks: list, shapes: list[str], margin: float = SHAPE_MARGIN) -> bool:
    """Whether `shapes[i]` is clearly the shape of `masks[i]`: each word fits its blob nearly as
    well as any shape word does, and every other order of the words fits the blobs worse by at
    least `margin`. A model's small star can come out as round as a circle, a square as round as
    the circle beside it, or "a square and a star" as two stars; which blob is which word is then
    a guess (the benchmark redraws such an original, `Bench.valid_original`)."""
    fits = _fits(masks, data.SHAPES)
    if any(fit[shape] - min(fit.values()) > margin for fit, shape in zip(fits, shapes)):
        return False
    if len(masks) < 2:
        return True
    costs = _order_costs(fits, shapes)
    given = costs.pop(tuple(shapes))
    return all(cost - given >= margin for cost in costs.values())


def guess_shape(mask: np.ndarray) -> str | None:
    """The shape word whose rendered outline fits a blob best (`shape_cost`); None for a blob
    of fewer than 4 pixels."""
    if np.count_nonzero(mask) < 4:
        return None
    (fit,) = _fits([mask], data.SHAPES)
    return min(fit, key=fit.get)


def _blob(colour: str, m: np.ndarray, min_area: float, min_core: int) -> Blob:
    """A Blob of `colour` from its mask (not present when smaller than `min_area` of the image or
    with fewer than `min_core` core pixels)."""
    h, w = m.shape
    area = float(m.mean())
    if area < min_area or core(m).sum() < min_core:
        return Blob(colour, False, area=area, mask=m)
    ys, xs = np.nonzero(m)
    cen = (float((xs + 0.5).sum() / len(xs) / w), float((ys + 0.5).sum() / len(ys) / h))
    return Blob(colour, True, cen, area, m)


def segment(image: np.ndarray, threshold: float = 90.0, min_area: float = 0.003, min_core: int = 3, colours=None,
            largest: bool = True) -> dict[str, Blob]:
    """Per colour word: a Blob (present, centroid, area fraction, mask, shape guess)."""
    lab, cols = colour_labels(image, threshold, colours)
    out = {}
    for k, c in enumerate(cols):
        m = lab == k
        if largest and m.any():
            m = _largest_blob(m)
        out[c] = _blob(c, m, min_area, min_core)
    return out


def segment_components(image: np.ndarray, threshold: float = 90.0, min_area: float = 0.003, min_core: int = 3,
                       colours=None) -> dict[str, list[Blob]]:
    """Per colour word: every connected blob of that colour large enough to be an object, the
    largest first — two objects the model drew in one colour are two blobs here, where `segment`
    keeps only the largest."""
    lab, cols = colour_labels(image, threshold, colours)
    out = {}
    for k, c in enumerate(cols):
        blobs = (_blob(c, m, min_area, min_core) for m in _components(lab == k))
        out[c] = [bl for bl in blobs if bl.present]
    return out


# An object is unreadable when more of its interior than this matches no palette colour: rendered
# scenes stay at or below 0.01 (400 two-object scenes); the model's muddy objects (a square in a
# brown blend of red and green for "a square") reach 0.45–0.7, its clean ones 0–0.3 (the higher
# ones small objects with blurred interiors; scenes 720–783, session 20).
UNREAD_LIMIT = 0.4


def unread_share(image: np.ndarray, away: float = 60.0, min_area: float = 0.003) -> float:
    """The largest share, over the picture's objects (regions of at least `min_area` lying
    further than `away` in RGB from the background colour), of an object's interior pixels
    (`core`) that no palette colour explains (`colour_labels`). Where it is high the segmenter
    reads only part of the object, so its centroid and area are wrong: an original with such an
    object gives an edit no reliable target (`Bench.valid_original` draws it again)."""
    img = np.asarray(image, np.float32)[..., :3]
    away_from_bg = np.linalg.norm(img - background_colour(img), axis=-1) > away
    labels, _ = colour_labels(img)
    worst = 0.0
    for region in _components(away_from_bg):
        inner = core(region)
        if region.mean() >= min_area and inner.sum() >= 3:
            worst = max(worst, float((labels[inner] == -1).mean()))
    return worst


def object_count(components: dict[str, list[Blob]]) -> int:
    """How many objects a picture whose blobs per colour are `components` (`segment_components`)
    shows: an object drawn twice counts twice — the model sometimes draws two green squares for
    "a green square and a yellow circle"."""
    return sum(len(blobs) for blobs in components.values())


def cleanliness(image: np.ndarray) -> float:
    """High-frequency energy: mean squared difference between the image (in [0, 1]) and its 3x3
    box blur. A rendered scene scores ~1e-3 (edges only); noise raises it."""
    img = np.asarray(image, np.float32)[..., :3] / 255.0
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    blur = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return float(((img - blur) ** 2).mean())


# ------------------------------------------------------------------------------------------------
# model quality

def load(model_dir=None):
    import torch
    from diffusers import StableDiffusionPipeline

    from .export import WEIGHTS_DIR

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir or WEIGHTS_DIR), local_files_only=True,
                                                   dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_with_attention(pipe, prompts, seeds, steps=50, cfg_scale=5.0, record_steps=(25, 49)):
    """Own DDIM loop (CFG), returning uint8 images and, per recorded step, the heads-averaged
    cross-attention of the conditional rows, averaged over the 16x16 layers: {step: (B, N, T)}."""
    import torch
    from diffusers import DDIMScheduler

    from .grounding import install

    unet, te, tok, vae = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae
    store: dict = {}
    old = dict(unet.attn_processors)
    install(unet, store)
    try:
        sched = DDIMScheduler.from_config(pipe.scheduler.config)
        sched.set_timesteps(steps)
        n = len(prompts)
        ids = tok(list(prompts) + [""] * n, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            enc = te(ids)[0]
            lat_shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
            z = torch.stack([torch.randn(lat_shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
            maps = {}
            for i, t in enumerate(sched.timesteps):
                store.clear()
                e = unet(torch.cat([z, z]), t, enc).sample
                if i in record_steps:
                    big = max(A.shape[1] for A in store.values())
                    maps[i] = torch.stack([A[:n] for A in store.values() if A.shape[1] == big]).mean(0)
                ec, eu = e.chunk(2)
                z = sched.step(eu + cfg_scale * (ec - eu), t, z).prev_sample
            img = vae.decode(z / vae.config.scaling_factor).sample
        images = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    finally:
        unet.set_attn_processor(old)
    return images, maps


def quality(pipe, n=50, steps=50, cfg_scale=5.0, batch=10, seed0=MEASURE_SEED0, save_grid=None):
    """Unguided-sample quality on the captions of n held-out scenes."""
    import torch

    from .grounding import attention_centroid

    scenes = [data.render_scene(seed0 + i) for i in range(n)]
    n_obj = n_present = n_shape_ok = 0
    all_present = exact = 0
    loc = {}
    images_all = []
    cleans = []
    for b in range(0, n, batch):
        sc = scenes[b:b + batch]
        imgs, maps = generate_with_attention(pipe, [s.caption for s in sc], [seed0 + i for i in range(b, b + len(sc))],
                                             steps, cfg_scale)
        images_all += list(imgs)
        for j, (s, im) in enumerate(zip(sc, imgs)):
            seg = segment(im)
            cleans.append(cleanliness(im))
            exact += object_count(segment_components(im)) == len(s.objects)
            ok_all = True
            for o in s.objects:
                n_obj += 1
                bl = seg[o.colour]
                if bl.present:
                    n_present += 1
                    n_shape_ok += bl.shape == o.shape
                else:
                    ok_all = False
            all_present += ok_all
            first = s.objects[0]
            bl = seg[first.colour]
            if bl.present:
                pos = data.word_positions(s.objects)[0]["shape"]
                for st, A in maps.items():
                    c = attention_centroid(A[j:j + 1, :, pos])[0].numpy()
                    loc.setdefault(st, []).append(float(abs(c[0] - bl.centroid[0]) + abs(c[1] - bl.centroid[1])))
    if save_grid:
        from PIL import Image

        g = data.grid(images_all, ncol=10)
        Image.fromarray(g).resize((g.shape[1] * 3, g.shape[0] * 3), Image.NEAREST).save(save_grid)
    return {
        "n_scenes": n,
        "objects": n_obj,
        "object_presence_rate": n_present / max(n_obj, 1),
        "all_objects_present_rate": all_present / max(n, 1),
        "exactly_the_prompted_objects_rate": exact / max(n, 1),
        "shape_accuracy_of_present": n_shape_ok / max(n_present, 1),
        "localisation_error": {f"step{k}": float(np.mean(v)) for k, v in loc.items()},
        "cleanliness_generated": float(np.mean(cleans)),
        "cleanliness_rendered": float(np.mean([cleanliness(s.image) for s in scenes])),
    }


def open_caption_quality(pipe, n=50, steps=50, cfg_scale=5.0, batch=10, seed0=MEASURE_SEED0):
    """Samples of captions that name only shapes ("a circle and a star"): the model must still
    draw every object, now in colours and sizes of its choosing. Reports the rate at which the
    image shows as many objects (blobs of distinct palette colours) as the caption names, which
    colours were chosen, and the spread of object sizes (what a resize or an appearance transfer
    can use)."""
    scenes = [data.render_scene(seed0 + i, vague=1.0) for i in range(n)]
    complete, exact, colours, areas = 0, 0, {}, []
    for b in range(0, n, batch):
        sc = scenes[b:b + batch]
        imgs, _ = generate_with_attention(pipe, [s.caption for s in sc], [seed0 + i for i in range(b, b + len(sc))],
                                          steps, cfg_scale, record_steps=())
        for s, im in zip(sc, imgs):
            present = [bl for bl in segment(im).values() if bl.present]
            complete += len(present) >= len(s.objects)
            exact += object_count(segment_components(im)) == len(s.objects)
            for bl in present:
                colours[bl.colour] = colours.get(bl.colour, 0) + 1
                areas.append(bl.area)
    radii = np.sqrt(np.asarray(areas) / np.pi) if areas else np.zeros(1)
    return {"n_scenes": n, "all_objects_drawn_rate": complete / max(n, 1),
            "exactly_the_prompted_objects_rate": exact / max(n, 1),
            "colours_chosen": dict(sorted(colours.items(), key=lambda kv: -kv[1])),
            "equivalent_radius_p10_p50_p90": [float(np.percentile(radii, q)) for q in (10, 50, 90)]}


def size_readout(pipe, n=48, steps=50, cfg_scale=5.0, batch=12, seed0=MEASURE_SEED0, record_steps=(5, 10, 20, 49)):
    """Does an object's size as SGL reads it follow the drawn object? On n unguided one-object
    samples (captions with their size words, so that sizes span the whole range), the Pearson
    correlation, per recorded step, between the drawn object's pixel area and `size(o)` =
    mean(softthr(attn)) (core.sgl), and the raw attention mass mean(attn); and the slope of log
    size(o) against log area (1: the read size is proportional to the area; well below 1: a
    size energy is met by reshaping the attention, not by drawing a larger object). A resize can
    only work if both are high (docs/benchmarks.md)."""
    import torch

    from sgl.runtime.evaluate import softthr

    scenes = [data.render_scene(seed0 + i, n_objects=1) for i in range(n)]
    areas, soft, mass = [], {st: [] for st in record_steps}, {st: [] for st in record_steps}
    for b in range(0, n, batch):
        sc = scenes[b:b + batch]
        imgs, maps = generate_with_attention(pipe, [s.caption for s in sc], [s.seed for s in sc], steps, cfg_scale,
                                             record_steps=record_steps)
        for j, (s, im) in enumerate(zip(sc, imgs)):
            blob = segment(im)[s.objects[0].colour]
            if not blob.present:
                continue
            areas.append(blob.area)
            col = data.word_positions(s.objects)[0]["shape"]
            for st in record_steps:
                a = maps[st][j, :, col]
                side = int(round(a.numel() ** 0.5))
                a = a.reshape(1, side, side).float()
                soft[st].append(float(softthr(a, torch.tensor([10.0])).mean()))
                mass[st].append(float(a.mean()))

    def corr(values):
        return float(np.corrcoef(areas, values)[0, 1]) if len(areas) > 2 else float("nan")

    def slope(values):  # d log size / d log area: 1 when the read size is proportional to the area
        ok = [(a, v) for a, v in zip(areas, values) if a > 0 and v > 0]
        return float(np.polyfit(*np.log(np.asarray(ok)).T, 1)[0]) if len(ok) > 2 else float("nan")

    return {"n_measured": len(areas),
            "pixel_area_range": [float(min(areas, default=0)), float(max(areas, default=0))],
            "corr_area_soft_size": {f"step{st}": corr(soft[st]) for st in record_steps},
            "slope_log_soft_size_vs_log_area": {f"step{st}": slope(soft[st]) for st in record_steps},
            "corr_area_attention_mass": {f"step{st}": corr(mass[st]) for st in record_steps}}


def attention_extent(pipe, n=96, t_values=(200, 400, 600), seed0=MEASURE_SEED0 + 2000, batch=32):
    """How much of each object its word's attention covers, on rendered two-object scenes (true
    masks known) noised to t and denoised once: per object, the shape word's attention at the
    highest resolution (16x16, the layers SGL reads), soft-thresholded as `shape(o)` does; the
    fraction of the object's mask that soft shape covers, its size over the object's area, and
    the correlation and slope of log soft size against log area. The inside-fraction grounding
    loss alone left a peak covering about a fifth of the object (a size energy is then met by
    reshaping the peak); the spread term (grounding.py) is meant to raise the cover."""
    import torch
    import torch.nn.functional as F

    from sgl.runtime.evaluate import softthr

    from .grounding import install
    from .train import pixels, tokenize

    unet, te, tok, vae, sched = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae, pipe.scheduler
    scenes = [data.render_scene(seed0 + i, n_objects=2) for i in range(n)]
    store: dict = {}
    old = dict(unet.attn_processors)
    install(unet, store)
    rows = {t: {"cover": [], "soft": [], "area": []} for t in t_values}
    try:
        with torch.no_grad():
            for b in range(0, n, batch):
                sc = scenes[b:b + batch]
                lat = vae.encode(pixels(np.stack([s.image for s in sc]))).latent_dist.mode() * vae.config.scaling_factor
                enc = te(tokenize(tok, [s.caption for s in sc], tok.model_max_length))[0]
                g = torch.Generator().manual_seed(seed0 + b)
                for t in t_values:
                    tt = torch.full((len(sc),), t, dtype=torch.long)
                    store.clear()
                    unet(sched.add_noise(lat, torch.randn(lat.shape, generator=g), tt), tt, enc)
                    big = max(A.shape[1] for A in store.values())
                    A = torch.stack([A for name, A in store.items() if A.shape[1] == big and name.startswith("up_")]).mean(0)
                    side = int(round(big ** 0.5))
                    for j, s in enumerate(sc):
                        for o, wp in zip(s.objects, data.word_positions(s.objects)):
                            soft = softthr(A[j, :, wp["shape"]].reshape(1, side, side), torch.tensor([10.0]))[0]
                            mask = F.adaptive_avg_pool2d(torch.from_numpy(o.mask).float()[None, None], side)[0, 0]
                            rows[t]["cover"].append(float((soft * mask).sum() / mask.sum().clamp_min(1e-6)))
                            rows[t]["soft"].append(float(soft.mean()))
                            rows[t]["area"].append(o.area)
    finally:
        unet.set_attn_processor(old)
    out = {"n_objects": 2 * n}
    for t, r in rows.items():
        soft, area = np.log(np.asarray(r["soft"]) + 1e-9), np.log(np.asarray(r["area"]) + 1e-9)
        out[f"t{t}"] = {"mask_covered": float(np.mean(r["cover"])),
                        "soft_size_over_area_median": float(np.median(np.exp(soft - area))),
                        "corr_log_soft_size_log_area": float(np.corrcoef(soft, area)[0, 1]),
                        "slope_log_soft_size_vs_log_area": float(np.polyfit(area, soft, 1)[0])}
    return out


def feature_caption_shift(pipe, layer="up_blocks.1", n=64, t_values=(700, 500, 300), seed0=MEASURE_SEED0 + 3000):
    """How far an object's pooled features move when its caption drops the colour words,
    against how far apart the colours lie. Rendered two-object scenes noised to t: the
    activations of `layer` (the profile's feature layer) mean-pooled over each object's mask,
    once under the full caption and once under the caption without colour words (the
    benchmark's edit prompts). `shift` is the mean |full − colourless| of one object (same
    latent, same colour), `spread` the mean |m_c − m_c'| between the colourless means of two
    colours, `red_orange` and `blue_purple` those of the closest pairs (mean absolute difference
    per channel, the measure of the appearance energy). A shift as large as the spread means an
    appearance read under another caption asks the guided run to imitate the caption as much as
    the colour; the runtime reads a reference's features under the guided prompt for this."""
    import torch
    import torch.nn.functional as F

    from .train import pixels, tokenize

    unet, te, tok, vae, sched = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae, pipe.scheduler
    scenes = [data.render_scene(seed0 + i, n_objects=2) for i in range(n)]
    captions = {"full": [s.caption for s in scenes],
                "colourless": [data.caption_of([o.vaguer(size=False, colour=True) for o in s.objects]) for s in scenes]}
    module = dict(unet.named_modules())[layer]
    seen: list = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
    out = {"layer": layer, "n_objects": 2 * n}
    try:
        with torch.no_grad():
            lat = vae.encode(pixels(np.stack([s.image for s in scenes]))).latent_dist.mode() * vae.config.scaling_factor
            enc = {k: te(tokenize(tok, c, tok.model_max_length))[0] for k, c in captions.items()}
            for t in t_values:
                noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(seed0 + t))
                tt = torch.full((n,), t, dtype=torch.long)
                noisy = sched.add_noise(lat, noise, tt)
                pooled = {}
                for k in captions:
                    seen.clear()
                    unet(noisy, tt, enc[k])
                    f = seen[-1].float()
                    rows = []
                    for j, sc in enumerate(scenes):
                        for o in sc.objects:
                            m = F.adaptive_avg_pool2d(torch.from_numpy(o.mask).float()[None, None], f.shape[-2:])[0, 0]
                            rows.append(((f[j] * m).sum((1, 2)) / m.sum().clamp_min(1e-6)).numpy())
                    pooled[k] = np.stack(rows)
                colours = np.array([o.colour for sc in scenes for o in sc.objects])
                means = {c: pooled["colourless"][colours == c].mean(0) for c in data.COLOURS if (colours == c).any()}

                def apart(a, b):
                    return float(np.abs(means[a] - means[b]).mean()) if a in means and b in means else float("nan")

                pairs = [apart(a, b) for a in means for b in means if a < b]
                shift = float(np.abs(pooled["full"] - pooled["colourless"]).mean())
                out[f"t{t}"] = {"shift": shift, "spread": float(np.mean(pairs)), "shift_over_spread": shift / float(np.mean(pairs)),
                                "red_orange": apart("orange", "red"), "blue_purple": apart("blue", "purple")}
    finally:
        handle.remove()
    return out


def timing(pipe, steps=50, repeats=3, threads=2):
    import torch

    torch.set_num_threads(threads)
    pipe("a red circle", num_inference_steps=2, output_type="np")
    ts = []
    for r in range(repeats):
        t = time.perf_counter()
        pipe("a red circle and a blue square", num_inference_steps=steps, guidance_scale=5.0, output_type="np",
             generator=torch.Generator().manual_seed(r))
        ts.append(time.perf_counter() - t)
    return {"seconds_50_steps_median": float(np.median(ts)), "threads": threads}


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="diffusers folder (default: the shipped weights)")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grid", default=None, help="save a PNG grid of the samples")
    p.add_argument("--json", default=None)
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--only", default=None, choices=sorted(ONLY), help="run one measurement")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    pipe = load(a.model)
    if a.only:
        _report({a.only: ONLY[a.only](pipe)}, a.json)
        return
    res = quality(pipe, a.n, a.steps, a.cfg, save_grid=a.grid)
    res["open_captions"] = open_caption_quality(pipe, a.n, a.steps, a.cfg)
    res["size_readout"] = size_readout(pipe, a.n, a.steps, a.cfg)
    res["attention_extent"] = attention_extent(pipe)
    res["feature_caption_shift"] = feature_caption_shift(pipe)
    if not a.no_timing:
        res["timing"] = timing(pipe, a.steps, threads=a.threads)
    _report(res, a.json)


def _report(res: dict, path: str | None) -> None:
    from sgl.files import write_text_atomic

    print(json.dumps(res, indent=1))
    if path:
        write_text_atomic(path, json.dumps(res, indent=1))


# measurements that `--only NAME` runs alone (the slow sampling ones need the full run)
ONLY = {"attention_extent": attention_extent, "feature_caption_shift": feature_caption_shift}


if __name__ == "__main__":
    main()
