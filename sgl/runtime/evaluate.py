"""Evaluating the energy IR with torch: one registry of intrinsics and a small interpreter.

`INTRINSICS` maps every IR op to one small torch function — the only Python side of each
`extern fn` in stdlib/prelude.sgl (adding an intrinsic = one extern line + one function here).
A function's positional parameters are its IR inputs' values; keyword-only parameters ask the
evaluator for context: `arg` (the node's argument), `grid` ((H, W) of the working grid),
`dtype` and `device`.

Value layouts (B = batch; constants have B = 1 and broadcast):
  Scalar [B]   Vec2 [B, 2]   Vector [B, C]   Map [B, H, W]   Features [B, C, h, w]

An `Evaluator` compiles a list of terms once (topological order with an explicit stack,
broadcast lifts, three tiers of nodes) and then, per call, computes only the active terms:
  fixed  — reads no recorded input (x(), box with constant corners, masks): computed once;
  static — reads recorded inputs of other sources only: computed without gradient, cached
           while the step and the input tensors stay the same;
  live   — reads the guided run ("self"): computed with autograd on every call.
Maps are computed in the evaluator's dtype (fp32 by default) whatever the inputs' dtype.

The sampler's side: `EnergyCallback` wraps an evaluator as sgl/runtime/sampler.py's
`energy(step, recorded)`, reading `Recorded` attention maps keyed by word tuples.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Mapping, Sequence

import attrs
import torch
import torch.nn.functional as F

from sgl.diagnostics import SGLError
from sgl.ir.walk import toposort
from sgl.ir.nodes import Node, Term
from sgl.ir.ops import READS, ROUNDING

SELF = "self"
EPS = 1e-12  # denominators of normalisations and mass averages; sqrt's floor

Grid = tuple[int, int]
InputKey = tuple[str, str, Hashable]  # ("attn", source, words) or ("feat", source, layer)

INTRINSICS: dict[str, Callable[..., torch.Tensor]] = {}

EXPLANATIONS = {
    "E240": """A `mask("…")` image could not be read when the program started to run.

    shape(cat) = mask("sketches/cat.png")      # error if the file is missing or not an image

The path is relative to the program file. Any grayscale or colour image that Pillow reads
works (white = 1, black = 0); it is area-averaged onto the working grid.
""",
    "E241": """The compiled program contains an operation that the evaluator does not implement.

This is a bug in SGL: every op of the energy IR has one torch function in
sgl/runtime/evaluate.py. Please report it with the program.
""",
    "E242": """The runtime did not record an attention map or feature layer that a term reads.

This is a bug in SGL: the sampler must record everything `Evaluator.needs` lists for the
current step. Please report it with the program.
""",
    "E243": """A recorded tensor has a shape the evaluator cannot use.

Attention maps must be [B, h, w] and features [B, C, h, w], with B the guided batch or 1. This
is a bug in SGL (or in code that calls the evaluator directly with its own tensors).
""",
    "E244": """A term combines values that cannot be combined once their sizes are known.

    dot(appearance(dog), colour₀(dog)) = 1      # error: features and x̂₀ have other channels

Vectors have no length in the type system: `pool(feat(), …)` (e.g. `appearance`) has one entry
per channel of the feature layer, `pool(latent(), …)` (e.g. `colour`) one per channel of the
VAE's latent and `pool(pixels(), …)` (e.g. `rgb`) one per colour channel, so they differ. Compare
a Vector with one read from the same kind of features: `appearance` with `appearance`, `colour`
with `colour`, `like(latent(), colour(o))`, `like(pixels(), rgb(o))`.
""",
}


def intrinsic(name: str):
    """Register the torch implementation of the IR op `name`."""
    def register(fn):
        if name in INTRINSICS:
            raise ValueError(f"intrinsic {name!r} registered twice")
        INTRINSICS[name] = fn
        return fn
    return register


# --- the one resampling of maps -------------------------------------------------------------

def resample(m: torch.Tensor, grid: Grid) -> torch.Tensor:
    """A map [B, h, w] on the grid (H, W). The only place where maps change resolution.
    Upsampling is bilinear, cell centres aligned (align_corners=False); reducing (a map read
    from the decoded picture, 64×64 → 16×16 in `shapes`) averages the area of every cell, so
    that a cell half covered by an object reads one half — bilinear reduction would read only
    the pixels nearest each cell centre."""
    if tuple(m.shape[-2:]) == tuple(grid):
        return m
    if m.shape[-2] >= grid[0] and m.shape[-1] >= grid[1]:
        return F.interpolate(m.unsqueeze(1), size=tuple(grid), mode="area").squeeze(1)
    return F.interpolate(m.unsqueeze(1), size=tuple(grid), mode="bilinear", align_corners=False).squeeze(1)


@functools.lru_cache(maxsize=32)
def cell_centres(grid: Grid, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y of every cell centre in image fractions, each [H, W] (cached: read-only)."""
    h, w = grid
    ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) / h
    xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) / w
    return xs.expand(h, w), ys[:, None].expand(h, w)


def _per_batch(v: torch.Tensor, rank: int) -> torch.Tensor:
    """A Scalar [B] viewed as [B, 1, …] to broadcast against a value with `rank` more dims
    (a constant [1] broadcasts as it is)."""
    return v if v.shape[0] == 1 else v.reshape(v.shape[0], *([1] * rank))


def _batched(*values: torch.Tensor) -> list[torch.Tensor]:
    """Values with batch 1 expanded to the common batch (for ops that do not broadcast)."""
    b = max(v.shape[0] for v in values)
    return [v if v.shape[0] == b else v.expand(b, *v.shape[1:]) for v in values]


# --- leaves ---------------------------------------------------------------------------------

@intrinsic("attn")
def attn(recorded: torch.Tensor, *, grid: Grid, dtype: torch.dtype) -> torch.Tensor:
    """A recorded attention map [B, h, w], on the working grid, in the working dtype."""
    return resample(recorded.to(dtype), grid)


@intrinsic("feat")
def feat(recorded: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
    """Recorded activations [B, C, h, w]; they keep their own grid (pool resamples the mask)."""
    return recorded.to(dtype)


@intrinsic("latent")
def latent(recorded: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
    """The model's estimate of the clean latent [B, C, h, w] at this step (the runtime computes
    it from the row's input and output: `sampler.clean_latent`)."""
    return recorded.to(dtype)


@intrinsic("pixels")
def pixels(recorded: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
    """x̂₀ decoded: the picture the model would show if it stopped at this step, [B, 3, H, W]
    RGB in [0, 1] at the image's resolution — by the VAE, or by the small decoder distilled from
    it that a model folder may ship (`shapes` does; `sampler.guidance_picture`)."""
    return recorded.to(dtype)


@intrinsic("const")
def const(*, arg, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A Scalar (arg: number) as [1] or a Vec2 (arg: (x, y)) as [1, 2]."""
    values = list(arg) if isinstance(arg, (tuple, list)) else arg
    return torch.tensor([values], dtype=dtype, device=device)


@intrinsic("x")
def x(*, grid: Grid, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return cell_centres(grid, dtype, device)[0].unsqueeze(0)


@intrinsic("y")
def y(*, grid: Grid, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return cell_centres(grid, dtype, device)[1].unsqueeze(0)


def _edge_coverage(lo: torch.Tensor, hi: torch.Tensor, n: int) -> torch.Tensor:
    """[B, n]: the fraction of each of n cells of [0, 1] covered by the interval [lo, hi]."""
    edges = torch.arange(n + 1, dtype=lo.dtype, device=lo.device) / n
    overlap = torch.minimum(hi[:, None], edges[1:]) - torch.maximum(lo[:, None], edges[:-1])
    return (overlap * n).clamp(0, 1)


@intrinsic("box")
def box(x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, *, grid: Grid) -> torch.Tensor:
    """The exact area of each cell covered by the box (so mean(box) is the box's area in the
    image); differentiable in the corners."""
    x0, y0, x1, y1 = _batched(x0, y0, x1, y1)
    h, w = grid
    return _edge_coverage(y0, y1, h)[:, :, None] * _edge_coverage(x0, x1, w)[:, None, :]


CIRCLE_SUBSAMPLES = 4  # per cell side


@intrinsic("circle")
def circle(center: torch.Tensor, radius: torch.Tensor, *, grid: Grid) -> torch.Tensor:
    """Cell coverage of the disc (radius in image fractions), anti-aliased: the mean over
    4×4 sub-samples of a one-sub-sample-wide linear ramp at the edge, so it is differentiable
    in the centre and the radius."""
    center, radius = _batched(center, radius)
    h, w = grid
    s = CIRCLE_SUBSAMPLES
    xs, ys = cell_centres((s * h, s * w), center.dtype, center.device)
    dx = xs - center[:, 0, None, None]
    dy = ys - center[:, 1, None, None]
    dist = torch.sqrt((dx * dx + dy * dy).clamp_min(EPS))
    ramp = max(1.0 / (s * h), 1.0 / (s * w))
    inside = ((radius[:, None, None] - dist) / ramp + 0.5).clamp(0, 1)
    return inside.reshape(-1, h, s, w, s).mean(dim=(2, 4))


@functools.lru_cache(maxsize=16)
def _load_gray(path: str, mtime: float, grid: Grid) -> torch.Tensor:
    """The file as a [H, W] float32 map in [0, 1]. An image larger than the grid is reduced by
    area averaging (each cell = the fraction of it that is white), a smaller one upsampled by
    `resample`."""
    import numpy as np
    from PIL import Image

    h, w = grid
    with Image.open(path) as image:
        gray = image.convert("F")  # 0–255 as floats, so box averaging does not round
        if gray.width >= w and gray.height >= h:
            gray = gray.resize((w, h), Image.Resampling.BOX)
        data = torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)
    return resample(data.unsqueeze(0), grid).squeeze(0)


@intrinsic("mask")
def mask(*, arg: str, grid: Grid, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A grayscale image file (white = 1) on the grid; a file is read once per modification."""
    path = Path(arg)
    try:
        image = _load_gray(str(path.resolve()), path.stat().st_mtime, tuple(grid))
    except (OSError, ValueError) as err:
        raise SGLError.single("E240", f"cannot read the mask image `{arg}`",
                              hint="give the path of a PNG or JPEG file, relative to the program",
                              notes=[str(err)]) from None
    return image.to(device=device, dtype=dtype).unsqueeze(0)


# --- arithmetic (operands already lifted to broadcast; see Evaluator) ------------------------

@intrinsic("add")
def add(a, b):
    return a + b


@intrinsic("sub")
def sub(a, b):
    return a - b


@intrinsic("mul")
def mul(a, b):
    return a * b


@intrinsic("div")
def div(a, b):
    return a / b


@intrinsic("neg")
def neg(a):
    return -a


@intrinsic("pack")
def pack(a, b):
    """Two Scalars [B] → a Vec2 [B, 2]."""
    return torch.stack(_batched(a, b), dim=-1)


@intrinsic("get_x")
def get_x(v):
    return v[:, 0]


@intrinsic("get_y")
def get_y(v):
    return v[:, 1]


# --- thresholds -----------------------------------------------------------------------------

@intrinsic("normalize")
def normalize(m):
    """Min–max normalised per batch element; a constant map becomes 0."""
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(EPS)


@intrinsic("softthr")
def softthr(m, k):
    """normalize, sigmoid(k·(a − 0.5)), normalize again (RESEARCH.md)."""
    return normalize(torch.sigmoid(_per_batch(k, 2) * (normalize(m) - 0.5)))


@intrinsic("hardthr")
def hardthr(m, t):
    """normalize, then 1 where a > t else 0; no gradient flows through it."""
    with torch.no_grad():
        return (normalize(m.detach()) > _per_batch(t, 2)).to(m.dtype)


# --- reductions -----------------------------------------------------------------------------

@intrinsic("sum")
def sum_(m):
    return m.sum(dim=(1, 2))


@intrinsic("mean")
def mean(m):
    return m.mean(dim=(1, 2))


@intrinsic("max")
def max_(m):
    return m.amax(dim=(1, 2))


@intrinsic("min")
def min_(m):
    return m.amin(dim=(1, 2))


@intrinsic("pool")
def pool(f, m):
    """Σ(m·f)/Σm per channel, [B, C]; m is detached and resampled to f's grid."""
    weights = resample(m.detach() if m.requires_grad else m, tuple(f.shape[-2:])).unsqueeze(1)
    return (weights * f).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(EPS)


@intrinsic("like")
def like(f, v, width, *, grid: Grid):
    """How alike every cell of f is to the vector v, [B, H, W] on the working grid:
    exp(−mean over channels of (f − v)² / width²), 1 where the cell shows v. `like(latent(),
    colour₀(o))` is where the picture shows the object's colour: an area read from pixels, not
    from attention, so a term on it pushes the cells that are about to change colour."""
    f, v = _batched(f, v)
    width = _per_batch(width, 2)
    distance = (f - v[:, :, None, None]).pow(2).mean(dim=1)
    return resample(torch.exp(-distance / width.pow(2).clamp_min(EPS)), grid)


# --- map transforms -------------------------------------------------------------------------

def _warp(m: torch.Tensor, src_x: torch.Tensor, src_y: torch.Tensor) -> torch.Tensor:
    """out[b, i, j] = m[b] read bilinearly at image fractions (src_x, src_y)[b, i, j], 0 outside."""
    sample_at = torch.stack((2 * src_x - 1, 2 * src_y - 1), dim=-1)
    return F.grid_sample(m.unsqueeze(1), sample_at, mode="bilinear", padding_mode="zeros",
                         align_corners=False).squeeze(1)


@intrinsic("shift")
def shift(m, by):
    """Translate by image fractions: out(p) = m(p − by)."""
    m, by = _batched(m, by)
    xs, ys = cell_centres(tuple(m.shape[-2:]), m.dtype, m.device)
    return _warp(m, xs - by[:, 0, None, None], ys - by[:, 1, None, None])


@intrinsic("scale")
def scale(m, factor):
    """Scale about the map's mass centroid c: out(p) = m(c + (p − c)/factor); a factor ≤ 0
    counts as a tiny one."""
    m, factor = _batched(m, factor)
    xs, ys = cell_centres(tuple(m.shape[-2:]), m.dtype, m.device)
    mass = m.sum(dim=(1, 2)).clamp_min(EPS)
    cx = ((m * xs).sum(dim=(1, 2)) / mass)[:, None, None]
    cy = ((m * ys).sum(dim=(1, 2)) / mass)[:, None, None]
    f = factor.clamp_min(1e-6)[:, None, None]
    return _warp(m, cx + (xs - cx) / f, cy + (ys - cy) / f)


# --- helpers on Scalars and vectors ---------------------------------------------------------

@intrinsic("abs")
def abs_(v):
    return v.abs()


@intrinsic("sqrt")
def sqrt(v):
    return torch.sqrt(v.clamp_min(EPS))


@intrinsic("norm")
def norm(v):
    """Euclidean length over the last dim (Vec2 or Vector); torch gives it gradient 0 at 0."""
    return torch.linalg.vector_norm(v, dim=-1)


@intrinsic("dot")
def dot(a, b):
    return (a * b).sum(dim=-1)


@intrinsic("relu")
def relu(v):
    return v.clamp_min(0)


@intrinsic("detach")
def detach(m):
    return m.detach() if m.requires_grad else m


# --- distances ------------------------------------------------------------------------------

def _rounded(d):
    """A non-negative distance d with its kink at zero rounded (sgl/ir/ops.py ROUNDING): a
    parabola below ROUNDING, d − ROUNDING/2 past it, so sides equal up to float noise give no
    gradient."""
    return torch.where(d < ROUNDING, d * d / (2 * ROUNDING), d - ROUNDING / 2)


@intrinsic("l1")
def l1(a, b):
    """Mean |a − b| over every non-batch element: [B], the kink at zero rounded (Huber)."""
    d = _rounded((a - b).abs())
    return d.reshape(d.shape[0], -1).mean(dim=1)


@intrinsic("hinge")
def hinge(v):
    """max(v, 0), the term of an inequality on its excess, the kink at zero rounded."""
    return _rounded(v.clamp_min(0))


@intrinsic("l2")
def l2(a, b):
    """Mean (a − b)² over every non-batch element: [B]."""
    d = a - b
    d = d * d
    return d.reshape(d.shape[0], -1).mean(dim=1)


# --- the interpreter ------------------------------------------------------------------------

RANK = {"Scalar": 0, "Vec2": 1, "Vector": 1, "Map": 2, "Features": 3}
BROADCASTING = frozenset({"add", "sub", "mul", "div"})
CONTEXT = frozenset({"arg", "grid", "dtype", "device"})


@dataclass
class Inputs:
    """What the runtime recorded at one step: attention maps [B, h, w] by (source, words) and
    activations [B, C, h, w] by (source, layer). Other sources may have batch 1 (broadcast)."""

    attn: Mapping[tuple[str, tuple[str, ...]], torch.Tensor] = field(default_factory=dict)
    feats: Mapping[tuple[str, str], torch.Tensor] = field(default_factory=dict)

    def get(self, key: InputKey) -> torch.Tensor | None:
        kind, source, what = key
        table = self.attn if kind == "attn" else self.feats
        return table.get((source, what))

    def batch_size(self) -> int:
        """B: the batch of the guided run's inputs (else of any input, else 1)."""
        tensors = [(s, t) for (s, _), t in [*self.attn.items(), *self.feats.items()]]
        own = [t.shape[0] for s, t in tensors if s == SELF]
        return max(own or [t.shape[0] for _, t in tensors] or [1])


@dataclass(frozen=True)
class Evaluation:
    """`total` [B]: Σ weight·value over the active terms (zeros when none is active).
    `values[i]` [B]: term i's unweighted value, or None when the term was not active."""

    total: torch.Tensor
    values: tuple[torch.Tensor | None, ...]

    @property
    def active(self) -> tuple[bool, ...]:
        return tuple(v is not None for v in self.values)


@dataclass(frozen=True)
class _Step:
    """One compiled node: store fn(*values[inputs]) at values[slot]."""

    slot: int
    fn: Callable[..., torch.Tensor]
    inputs: tuple[int, ...]
    key: InputKey | None  # for attn/feat: which recorded tensor is the first argument
    op: str               # the IR op, for diagnostics


@dataclass(frozen=True)
class _Plan:
    """What one set of active terms needs: the static and live steps in topological order,
    and which fixed and static values the later tiers read (the only ones copied per call)."""

    fixed_out: tuple[int, ...]
    static: tuple[_Step, ...]
    static_out: tuple[int, ...]
    live: tuple[_Step, ...]
    static_keys: tuple[InputKey, ...]
    live_keys: tuple[InputKey, ...]
    terms: tuple[int, ...]       # indices of the active terms
    weights: torch.Tensor        # their weights, [len(terms)]


def input_key(node: Node) -> InputKey:
    source, what = node.arg
    return (node.op, source, what)


class Evaluator:
    """The energy of a list of terms as a differentiable torch function of recorded inputs."""

    def __init__(self, terms: Sequence[Term], grid: Grid = (64, 64), dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        self.terms = tuple(terms)
        self.grid = (int(grid[0]), int(grid[1]))
        self.dtype = dtype
        self.device = torch.device(device)
        self._weights = [float(t.weight) for t in self.terms]
        order = toposort([t.root for t in self.terms])
        self._slot = {id(n): i for i, n in enumerate(order)}
        self._steps = [self._compile(n) for n in order]
        self._tier = self._tiers(order)
        self._roots = [self._slot[id(t.root)] for t in self.terms]
        self._reach = [frozenset(self._slot[id(n)] for n in toposort([t.root])) for t in self.terms]
        self._plans: dict[tuple[bool, ...], _Plan] = {}
        self._fixed: dict[int, torch.Tensor] = {}
        self._static: dict[int, torch.Tensor] = {}  # values of other sources at one step
        self._static_stamp: tuple | None = None
        self._fill_fixed()

    # -- compilation ------------------------------------------------------------------------

    def _compile(self, node: Node) -> _Step:
        fn = INTRINSICS.get(node.op)
        if fn is None:
            raise SGLError.single("E241", f"the evaluator has no implementation of the op `{node.op}`",
                                  notes=["this is a bug in SGL: every IR op needs an intrinsic in "
                                         "sgl/runtime/evaluate.py"])
        context = {"arg": node.arg, "grid": self.grid, "dtype": self.dtype, "device": self.device}
        wanted = _keyword_params(fn)
        if wanted:
            fn = functools.partial(fn, **{k: context[k] for k in wanted})
        if node.op in BROADCASTING and len(node.inputs) == 2:
            fn = _lifted(fn, [RANK.get(node.type.name, 0) - RANK.get(i.type.name, 0) for i in node.inputs])
        key = input_key(node) if node.op in READS else None
        return _Step(self._slot[id(node)], fn, tuple(self._slot[id(i)] for i in node.inputs), key, node.op)

    def _tiers(self, order: list[Node]) -> list[str]:
        """'fixed' / 'static' / 'live' per slot (see the module docstring)."""
        tiers: list[str] = []
        for node in order:
            if node.op in READS:
                tier = "live" if node.arg[0] == SELF else "static"
            else:
                below = {tiers[self._slot[id(i)]] for i in node.inputs}
                tier = "live" if "live" in below else "static" if "static" in below else "fixed"
            tiers.append(tier)
        return tiers

    def _plan(self, active: tuple[bool, ...]) -> _Plan:
        plan = self._plans.get(active)
        if plan is None:
            on = tuple(i for i, a in enumerate(active) if a)
            needed = frozenset().union(*(self._reach[i] for i in on))
            steps = [s for s in self._steps if s.slot in needed]
            static = tuple(s for s in steps if self._tier[s.slot] == "static")
            live = tuple(s for s in steps if self._tier[s.slot] == "live")
            roots = {self._roots[i] for i in on}

            def read_by(tier_steps, tier):
                used = {i for s in tier_steps for i in s.inputs} | roots
                return tuple(sorted(i for i in used if i in needed and self._tier[i] == tier))

            weights = torch.tensor([self._weights[i] for i in on], dtype=self.dtype, device=self.device)
            plan = _Plan(read_by(static + live, "fixed"), static, read_by(live, "static"), live,
                         tuple(s.key for s in static if s.key is not None),
                         tuple(s.key for s in live if s.key is not None), on, weights)
            self._plans[active] = plan
        return plan

    def _fill_fixed(self) -> None:
        """Compute the constant maps now (once), so that a bad mask file fails before sampling,
        with the span of the first term that reads it."""
        values: list = [None] * len(self._steps)
        with torch.no_grad():
            for term, reach in zip(self.terms, self._reach):
                steps = [s for s in self._steps if s.slot in reach and self._tier[s.slot] == "fixed"
                         and s.slot not in self._fixed]
                try:
                    self._run(steps, values, Inputs(), 1)
                except SGLError as err:
                    raise SGLError([attrs.evolve(d, span=d.span or term.span) for d in err.diagnostics],
                                   err.sources) from None
                self._fixed.update((s.slot, values[s.slot]) for s in steps)

    # -- evaluation -------------------------------------------------------------------------

    def active(self, step: int, num_steps: int) -> tuple[bool, ...]:
        return tuple(t.active(step, num_steps) for t in self.terms)

    def needs(self, step: int, num_steps: int) -> set[InputKey]:
        """The recorded inputs the active terms read at this step (empty: record nothing)."""
        plan = self._plan(self.active(step, num_steps))
        return set(plan.static_keys) | set(plan.live_keys)

    def __call__(self, step: int, num_steps: int, inputs: Inputs) -> Evaluation:
        active = self.active(step, num_steps)
        batch = inputs.batch_size()
        if not any(active):
            zero = torch.zeros(batch, dtype=self.dtype, device=self.device)
            return Evaluation(zero, (None,) * len(self.terms))
        plan = self._plan(active)
        values: list = [None] * len(self._steps)
        fixed = self._fixed
        for slot in plan.fixed_out:
            values[slot] = fixed[slot]
        if plan.static:
            if not self._static_valid(plan, step, num_steps, inputs):
                with torch.no_grad():
                    self._run(plan.static, values, inputs, batch)
                self._static = {slot: values[slot] for slot in plan.static_out}
            for slot in plan.static_out:
                values[slot] = self._static[slot]
        self._run(plan.live, values, inputs, batch)
        per_term: list[torch.Tensor | None] = [None] * len(active)
        for i in plan.terms:
            value = values[self._roots[i]]
            per_term[i] = value.expand(batch) if value.shape[0] != batch else value
        # one weighted sum over the stacked terms: two autograd nodes instead of two per term
        stacked = torch.stack([per_term[i] for i in plan.terms], dim=-1)
        total = stacked @ plan.weights.to(device=stacked.device, dtype=stacked.dtype)
        return Evaluation(total, tuple(per_term))

    def _run(self, steps: Sequence[_Step], values: list, inputs: Inputs, batch: int) -> None:
        """Evaluate `steps` in order into `values` (the interpreter's inner loop)."""
        for step in steps:
            try:
                if step.key is None:
                    values[step.slot] = step.fn(*[values[i] for i in step.inputs])
                else:
                    values[step.slot] = step.fn(self._recorded(inputs, step.key, batch))
            except RuntimeError as exc:  # torch's shape errors: Vectors of different lengths
                raise self._failed(step, values, exc) from exc

    def _failed(self, step: _Step, values: list, exc: RuntimeError) -> SGLError:
        """E244 for a step torch refused, at the span of the first term that computes it."""
        term = next(t for t, reach in zip(self.terms, self._reach) if step.slot in reach)
        shapes = ", ".join(str(tuple(values[i].shape)) for i in step.inputs)
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = ("Vectors read from feat() (e.g. appearance), latent() (e.g. colour) and pixels() (e.g. rgb) "
                "have different lengths: compare a Vector with one of the same kind"
                if "size" in first_line else None)
        return SGLError.single("E244", f"`{step.op}` cannot combine values of the shapes {shapes}",
                               span=term.span, hint=hint, notes=[f"torch: {first_line}"])

    def _static_valid(self, plan: _Plan, step: int, num_steps: int, inputs: Inputs) -> bool:
        """Whether the cached values of other sources still hold: same plan and step, the very
        same input tensors (by identity), unmodified since. Remembers the new stamp if not."""
        tensors = tuple(inputs.get(k) for k in plan.static_keys)
        stamp = (id(plan), step, num_steps, tensors, tuple(getattr(t, "_version", 0) for t in tensors))
        old = self._static_stamp
        if (old is not None and old[:3] == stamp[:3] and old[4] == stamp[4]
                and all(a is b for a, b in zip(old[3], tensors))):
            return True
        self._static_stamp = stamp
        return False

    def _recorded(self, inputs: Inputs, key: InputKey, batch: int) -> torch.Tensor:
        """The recorded tensor for `key`, checked against what the runtime promised."""
        tensor = inputs.get(key)
        kind, source, what = key
        name = " ".join(what) if kind == "attn" and isinstance(what, tuple) else str(what)
        noun = "attention map of" if kind == "attn" else "features of the layer"
        bug = "this is a bug in SGL: the runtime must record what `Evaluator.needs` lists"
        if tensor is None:
            raise SGLError.single("E242", f"no {noun} `{name}` was recorded for the source `{source}`",
                                  notes=[bug])
        rank = 3 if kind == "attn" else 4
        if tensor.dim() != rank or tensor.shape[0] not in (1, batch):
            raise SGLError.single("E243", f"the {noun} `{name}` of the source `{source}` has the shape "
                                          f"{tuple(tensor.shape)}, expected {rank} dims and batch 1 or {batch}",
                                  notes=[bug])
        return tensor


@functools.cache
def _keyword_params(fn: Callable) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    names = tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
    unknown = set(names) - CONTEXT
    if unknown:
        raise TypeError(f"intrinsic {fn.__name__} asks for unknown context {sorted(unknown)}")
    return names


def _lifted(fn: Callable, lifts: list[int]) -> Callable:
    """fn with Scalar operands reshaped [B] → [B, 1, …] to broadcast against the other one."""
    if not any(k > 0 for k in lifts):
        return fn
    ka, kb = lifts

    def call(a, b):
        if ka > 0:
            a = _per_batch(a, ka)
        if kb > 0:
            b = _per_batch(b, kb)
        return fn(a, b)
    return call


# --- the sampler's side -------------------------------------------------------------------

def inputs_from_recorded(recorded: Mapping[str, object], feature_layers: Mapping[str, str] | None = None) -> Inputs:
    """`Inputs` from the sampler's per-source `Recorded` (sgl/runtime/hooks.py).

    Attention maps are keyed by the token-group keys the runtime asked for, which must be the
    IR's word tuples. Features are keyed by module name; `feature_layers` maps the IR's layer
    names to them (e.g. {"default": "up_blocks.2"}), and a module name also works as itself."""
    attn: dict = {}
    feats: dict = {}
    for source, rec in recorded.items():
        for key, tensor in rec.attn.items():
            attn[(source, key)] = tensor
        for layer, tensor in rec.feats.items():
            feats[(source, layer)] = tensor
        for name, layer in (feature_layers or {}).items():
            if layer in rec.feats:
                feats[(source, name)] = rec.feats[layer]
    return Inputs(attn, feats)


def term_names(terms: Sequence[Term]) -> list[str]:
    """A unique trace name per term: its label, numbered when several terms share it (e.g.
    the unrolled body of a `for`)."""
    counts: dict[str, int] = {}
    for term in terms:
        counts[term.label] = counts.get(term.label, 0) + 1
    seen: dict[str, int] = {}
    names = []
    for term in terms:
        if counts[term.label] == 1:
            names.append(term.label)
        else:
            seen[term.label] = seen.get(term.label, 0) + 1
            names.append(f"{term.label} #{seen[term.label]}")
    return names


class EnergyCallback:
    """The sampler's `energy(step, recorded)` for an evaluator: None at steps where no term is
    active (no guidance, nothing to back-propagate); else the total [B] and every active term's
    weighted value (mean over the batch) by its trace name."""

    def __init__(self, evaluator: Evaluator, feature_layers: Mapping[str, str] | None = None):
        self.evaluator = evaluator
        self.feature_layers = dict(feature_layers or {})
        self.names = term_names(evaluator.terms)

    def __call__(self, step, recorded: Mapping[str, object]):
        from sgl.runtime.sampler import EnergyOut

        if not any(self.evaluator.active(step.index, step.num_steps)):
            return None
        out = self.evaluator(step.index, step.num_steps, inputs_from_recorded(recorded, self.feature_layers))
        terms, parts = {}, {}
        for name, term, value in zip(self.names, self.evaluator.terms, out.values):
            if value is not None:
                terms[name] = float(term.weight * value.detach().mean())
                parts[name] = (float(term.weight), value)
        return EnergyOut(out.total, terms, parts)
