"""Deterministic procedural scenes of coloured shapes with captions and exact masks.

`render_scene(seed)` draws one 64x64 RGB scene with 1-3 objects. Within a scene every object has a
different colour and a different shape, so every caption word names exactly one object. Objects
are drawn at 4x supersampling and box-filtered down, so edges are anti-aliased; an object's mask is
the set of pixels whose supersampled coverage by that (visible) object is at least one half.

Caption grammar: objects joined by " and ", each "a [small|big] [<colour>] <shape>".

With `vague > 0` (the trainer's `--vague`) each object's size word and colour word are left out of
the caption with that probability (drawn from a separate random stream, so the picture of a seed
never changes): the model then also learns captions that leave an object's size or look open,
which is what self-guidance edits (a resize, an appearance from a reference) need a prompt to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4

# Saturated, well separated colours (pairwise RGB distance >= ~90); backgrounds are greys.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 215, 30),
    "purple": (135, 45, 175),
    "orange": (250, 135, 20),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "big")
# Radius (fraction of the image width) of the circle that bounds an object, per size word.
SIZE_RANGES = {"small": (0.08, 0.11), None: (0.13, 0.17), "big": (0.20, 0.24)}
FILLER_WORDS = ("a", "an", "and")
VOCABULARY = FILLER_WORDS + COLOURS + SHAPES + SIZES


@dataclass
class SceneObject:
    colour: str
    shape: str
    size: str | None  # "small", "big" or None (no size word in the caption)
    center: tuple[float, float]  # drawing centre (x, y) in [0, 1], x right, y down
    radius: float  # bounding radius, fraction of the width
    mask: np.ndarray = field(repr=False)  # bool HxW, visible pixels of this object
    centroid: tuple[float, float] = (0.0, 0.0)  # mask centroid, pixel centres, in [0, 1]
    area: float = 0.0  # mask area / image area
    says_size: bool = True  # the caption names the size word (when there is one)
    says_colour: bool = True  # the caption names the colour

    @property
    def words(self) -> list[str]:
        """The object's words in the caption."""
        return (([self.size] if self.size and self.says_size else []) + ([self.colour] if self.says_colour else [])
                + [self.shape])

    def vaguer(self, size: bool = True, colour: bool = False) -> "SceneObject":
        """The same object described without its size word (`size`) and/or its colour (`colour`)."""
        return replace(self, says_size=self.says_size and not size,
                                   says_colour=self.says_colour and not colour)

    @property
    def phrase(self) -> str:
        words = self.words
        return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


@dataclass
class Scene:
    seed: int
    image: np.ndarray  # uint8 HxWx3
    background: tuple[int, int, int]
    objects: list[SceneObject]

    @property
    def caption(self) -> str:
        return caption_of(self.objects)

    @property
    def labels(self) -> np.ndarray:
        """uint8 HxW: 0 background, i+1 for object i."""
        lab = np.zeros(self.image.shape[:2], np.uint8)
        for i, o in enumerate(self.objects):
            lab[o.mask] = i + 1
        return lab


def caption_of(objects) -> str:
    return " and ".join(o.phrase for o in objects)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        h = r * 0.80
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        # equilateral, pointing up; shifted down so that its area centroid is the centre
        pts = [(cx + r * math.cos(a), cy + r * 0.25 - r * math.sin(a)) for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)]
        return [(x, y) for x, y in pts]
    if shape == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = math.pi / 2 + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy - rr * math.sin(a)))
        return pts
    return None


def _coverage(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Supersampled coverage in [0, 1] of one shape on a size x size grid (coordinates in pixels)."""
    big = size * SUPERSAMPLE
    im = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(im)
    s = SUPERSAMPLE
    if shape == "circle":
        d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    else:
        d.polygon([(x * s, y * s) for x, y in _polygon(shape, cx, cy, r)], fill=255)
    a = np.asarray(im, np.float32).reshape(size, s, size, s).mean(axis=(1, 3)) / 255.0
    return a


def render_scene(seed: int, size: int = IMAGE_SIZE, n_objects: int | None = None,
                 vague: float | tuple[float, float] = 0.0) -> Scene:
    """The scene for `seed` (deterministic); `vague`: the probability that the caption leaves out an
    object's size word, and independently its colour word — one number for both, or a
    (size, colour) pair. The draws do not depend on `vague`, so a colour word is left out for
    the same objects whatever the size probability."""
    rng = np.random.default_rng([seed, 0x5617])
    n = n_objects or int(rng.choice([1, 2, 3], p=[0.25, 0.40, 0.35]))
    colours = rng.choice(len(COLOURS), n, replace=False)
    shapes = rng.choice(len(SHAPES), n, replace=False)
    grey = rng.uniform(175, 235)
    bg = np.clip(grey + rng.uniform(-10, 10, 3), 0, 255).round().astype(np.uint8)
    placed: list[tuple[float, float, float]] = []
    specs = []
    for i in range(n):
        sw = [None, "small", "big"][int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
        for attempt in range(200):
            lo, hi = SIZE_RANGES[sw if attempt < 100 else "small"]
            r = rng.uniform(lo, hi)
            cx, cy = rng.uniform(r + 0.02, 0.98 - r, 2)
            if all(math.hypot(cx - x, cy - y) > (r + rr) * 0.95 for x, y, rr in placed):
                if attempt >= 100:
                    sw = "small"
                break
        else:  # pragma: no cover - the fallback above always finds room for a small object
            raise RuntimeError(f"cannot place object {i} of seed {seed}")
        placed.append((cx, cy, r))
        specs.append((COLOURS[colours[i]], SHAPES[shapes[i]], sw, cx, cy, r))

    img = np.broadcast_to(bg.astype(np.float32), (size, size, 3)).copy()
    covs = []
    for colour, shape, sw, cx, cy, r in specs:
        cov = _coverage(shape, cx * size, cy * size, r * size, size)
        img = img * (1 - cov[..., None]) + np.asarray(PALETTE[colour], np.float32) * cov[..., None]
        # later objects hide earlier ones
        covs = [c * (1 - cov) for c in covs]
        covs.append(cov)
    image = np.clip(img.round(), 0, 255).astype(np.uint8)
    ys, xs = np.mgrid[0:size, 0:size]
    objects = []
    says = np.random.default_rng([seed, 0xCA9]).random((n, 2)) >= np.broadcast_to(np.asarray(vague, float), (2,))
    for (colour, shape, sw, cx, cy, r), cov, (say_size, say_colour) in zip(specs, covs, says):
        m = cov >= 0.5
        cnt = max(int(m.sum()), 1)
        cen = (float((xs[m] + 0.5).sum() / cnt / size), float((ys[m] + 0.5).sum() / cnt / size))
        objects.append(SceneObject(colour, shape, sw, (float(cx), float(cy)), float(r), m, cen, float(m.mean()),
                                   bool(say_size), bool(say_colour)))
    return Scene(seed, image, tuple(int(v) for v in bg), objects)


# --------------------------------------------------------------------------------------------
# tokens: the tokenizer (build.py) maps every vocabulary word to one token, so positions of object
# words are known without running it. Position 0 is <|startoftext|>.

def word_positions(objects) -> list[dict[str, int]]:
    """For each object, {"colour"|"shape"|"size": token position} in the tokenized caption."""
    pos = 1
    out = []
    for i, o in enumerate(objects):
        if i > 0:
            pos += 1  # "and"
        pos += 1  # "a" / "an"
        d = {}
        for word in o.words:
            kind = "size" if word in SIZES else "colour" if word in PALETTE else "shape"
            d[kind] = pos
            pos += 1
        out.append(d)
    return out


MAX_OBJECTS = 3
MAX_TOKENS = 24  # CLIP max_position_embeddings


def build_cache(seeds, size: int = IMAGE_SIZE, vague: float | tuple[float, float] = 0.0):
    """Arrays for training: images uint8 NxHxWx3, labels uint8 NxHxW, token positions int16 Nx3x3
    (object x [colour, shape, size], -1 where absent), captions (list of str), centroids float32 Nx3x2."""
    seeds = list(seeds)
    n = len(seeds)
    images = np.zeros((n, size, size, 3), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    tokpos = -np.ones((n, MAX_OBJECTS, 3), np.int16)
    cents = np.zeros((n, MAX_OBJECTS, 2), np.float32)
    captions = []
    for k, s in enumerate(seeds):
        sc = render_scene(int(s), size, vague=vague)
        images[k] = sc.image
        labels[k] = sc.labels
        captions.append(sc.caption)
        for i, (o, wp) in enumerate(zip(sc.objects, word_positions(sc.objects))):
            tokpos[k, i] = [wp.get("colour", -1), wp["shape"], wp.get("size", -1)]
            cents[k, i] = o.centroid
    return {"images": images, "labels": labels, "tokpos": tokpos, "centroids": cents, "captions": np.array(captions)}


def _build_cache_chunk(args):
    lo, hi, size, vague = args
    return build_cache(range(lo, hi), size, vague)


def build_cache_parallel(start: int, count: int, size: int = IMAGE_SIZE, workers: int = 2, chunk: int = 2000,
                         vague: float | tuple[float, float] = 0.0):
    """`build_cache(range(start, start + count), size, vague)` using `workers` processes."""
    import multiprocessing as mp

    jobs = [(lo, min(lo + chunk, start + count), size, vague) for lo in range(start, start + count, chunk)]
    if workers <= 1:
        parts = [_build_cache_chunk(j) for j in jobs]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_build_cache_chunk, jobs)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def grid(images, ncol: int = 8, pad: int = 2) -> np.ndarray:
    """Tile uint8 HxWx3 images into one picture (for looking at samples)."""
    images = [np.asarray(i) for i in images]
    h, w = images[0].shape[:2]
    nrow = (len(images) + ncol - 1) // ncol
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return out
