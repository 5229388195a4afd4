"""Benchmark: the IR evaluator against the same energy hand-written in plain torch.

A 20-term program — centroid, size, shape and appearance of five objects, each compared with
the unguided run ("orig") at the same step — on 64×64 attention maps, forward + backward.
Every repetition uses a new step, so both sides recompute the orig targets, as when sampling.
The target is evaluator / hand-written ≤ 1.1 (median times).

    python -m sgl.bench.energy [--terms 20] [--grid 64] [--repeats 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sgl.check.types import FEATURES, MAP, SCALAR, VEC2, VECTOR
from sgl.ir.nodes import Graph, Node, Term
from sgl.ir.ops import ROUNDING
from sgl.runtime.evaluate import Evaluator, Inputs

PROPERTIES = ("centroid", "size", "shape", "appearance")


class CoreIR:
    """Hand-built IR of the stdlib/core.sgl properties — the graphs the lowering produces for
    `shape`, `size`, `centroid` and `appearance` — for benchmarks and evaluator tests."""

    def __init__(self, graph: Graph | None = None):
        self.g = graph or Graph()

    def const(self, value: float) -> Node:
        return self.g.node("const", SCALAR, arg=float(value))

    def vec(self, x: float, y: float) -> Node:
        return self.g.node("const", VEC2, arg=(float(x), float(y)))

    def attn(self, words: tuple[str, ...], source: str = "self") -> Node:
        return self.g.node("attn", MAP, arg=(source, tuple(words)))

    def feat(self, source: str = "self", layer: str = "default") -> Node:
        return self.g.node("feat", FEATURES, arg=(source, layer))

    def op(self, op: str, type_, *inputs: Node, arg=None) -> Node:
        return self.g.node(op, type_, tuple(inputs), arg)

    # fn shape(o) -> Map = softthr(attn(o), 10)
    def shape(self, words, source="self") -> Node:
        return self.op("softthr", MAP, self.attn(words, source), self.const(10))

    # fn size(o) -> Scalar = mean(shape(o))
    def size(self, words, source="self") -> Node:
        return self.op("mean", SCALAR, self.shape(words, source))

    # fn centroid(o) -> Vec2 = (sum(attn(o) * x()), sum(attn(o) * y())) / sum(attn(o))
    def centroid(self, words, source="self") -> Node:
        a = self.attn(words, source)
        sx = self.op("sum", SCALAR, self.op("mul", MAP, a, self.op("x", MAP)))
        sy = self.op("sum", SCALAR, self.op("mul", MAP, a, self.op("y", MAP)))
        return self.op("div", VEC2, self.op("pack", VEC2, sx, sy), self.op("sum", SCALAR, a))

    # fn appearance(o) -> Vector = pool(feat(), hardthr(attn(o), 0.5))
    def appearance(self, words, source="self") -> Node:
        return self.op("pool", VECTOR, self.feat(source), self.op("hardthr", MAP, self.attn(words, source),
                                                                 self.const(0.5)))

    def l1(self, a: Node, b: Node) -> Node:
        return self.op("l1", SCALAR, a, b)

    def term(self, root: Node, weight: float = 1.0, window=(0.0, 1.0), label: str = "") -> Term:
        return Term(root, weight, window, "eq", "l1", label)


OBJECTS = ("circle", "square", "triangle", "star", "heart")
BENCH_PROMPT = "a red circle and a blue square and a green triangle and a yellow star and a purple heart"


def bench_program(n_terms: int = 20) -> tuple[str, list[tuple[str, tuple[str, ...], float]]]:
    """SGL text of `n_terms` constraints cycling through the four properties over five
    objects, each against the unguided run (centroids moved by (0.1, 0)), and the plan
    (property, words, weight) that the hand-written version follows."""
    lines = [f'prompt "{BENCH_PROMPT}"']
    plan = []
    for i in range(n_terms):
        prop = PROPERTIES[i % len(PROPERTIES)]
        name = OBJECTS[(i // len(PROPERTIES)) % len(OBJECTS)]
        weight = 1.0 + 0.5 * (i % 3)
        offset = " + (0.1, 0)" if prop == "centroid" else ""
        lines.append(f"{prop}({name}) = {prop}_0({name}){offset}  weight {weight:g}")
        plan.append((prop, (name,), weight))
    return "\n".join(lines) + "\n", plan


def bench_terms(n_terms: int = 20) -> tuple[list[Term], list[tuple[str, tuple[str, ...], float]]]:
    """The bench program, compiled (parse, check, lower, passes), and its plan."""
    from sgl.compiler import check_source

    text, plan = bench_program(n_terms)
    return list(check_source(text, "<bench>").terms), plan


# --- the same energy, written by hand ---------------------------------------------------------

def _normalize(m):
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def _properties(attn: torch.Tensor, feats: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> dict:
    """shape, size, centroid, appearance of one attention map [B, H, W] in plain torch."""
    shape = _normalize(torch.sigmoid(10 * (_normalize(attn) - 0.5)))
    mass = attn.sum(dim=(1, 2))
    centroid = torch.stack(((attn * xs).sum(dim=(1, 2)), (attn * ys).sum(dim=(1, 2))), dim=-1) / mass[:, None]
    with torch.no_grad():
        hard = (_normalize(attn) > 0.5).to(attn.dtype)
        if hard.shape[-2:] != feats.shape[-2:]:
            hard = torch.nn.functional.interpolate(hard[:, None], size=feats.shape[-2:], mode="bilinear",
                                                   align_corners=False)[:, 0]
    weights = hard[:, None]
    appearance = (weights * feats).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-12)
    return {"shape": shape, "size": shape.mean(dim=(1, 2)), "centroid": centroid, "appearance": appearance}


def hand_written_energy(plan, inputs: Inputs, grid: int) -> torch.Tensor:
    """The bench program's energy [B], computed directly (each property once per object)."""
    h = w = grid
    xs = ((torch.arange(w, dtype=torch.float32) + 0.5) / w).expand(h, w)
    ys = ((torch.arange(h, dtype=torch.float32) + 0.5) / h)[:, None].expand(h, w)
    offset = torch.tensor([0.1, 0.0])
    objects = sorted({words for _, words, _ in plan})
    mine = {o: _properties(inputs.attn[("self", o)], inputs.feats[("self", "default")], xs, ys) for o in objects}
    with torch.no_grad():
        theirs = {o: _properties(inputs.attn[("orig", o)], inputs.feats[("orig", "default")], xs, ys)
                  for o in objects}
    total = 0
    for prop, words, weight in plan:
        target = theirs[words][prop] + offset if prop == "centroid" else theirs[words][prop]
        # |d| with its kink rounded as the IR's l1 has it (sgl/ir/ops.py ROUNDING): Huber / δ
        diff = torch.nn.functional.huber_loss(mine[words][prop], target, reduction="none", delta=ROUNDING) / ROUNDING
        total = total + weight * diff.reshape(diff.shape[0], -1).mean(dim=1)
    return total


def bench_inputs(plan, grid: int, batch: int, channels: int, feature_grid: int, seed: int = 0) -> Inputs:
    """Random attention maps (softmax-like, positive) and features for self and orig."""
    gen = torch.Generator().manual_seed(seed)
    attn, feats = {}, {}
    for source in ("self", "orig"):
        for words in sorted({w for _, w, _ in plan}):
            attn[(source, words)] = torch.rand(batch, grid, grid, generator=gen) ** 4 / (grid * grid)
        feats[(source, "default")] = torch.randn(batch, channels, feature_grid, feature_grid, generator=gen)
    return Inputs(attn, feats)


def _with_grad(inputs: Inputs) -> Inputs:
    """Fresh leaves for the guided run (as a sampler hands them over every step)."""
    attn = {k: (v.clone().requires_grad_(True) if k[0] == "self" else v) for k, v in inputs.attn.items()}
    feats = {k: (v.clone().requires_grad_(True) if k[0] == "self" else v) for k, v in inputs.feats.items()}
    return Inputs(attn, feats)


def _alternate(first, second, repeats: int, warmup: int = 3) -> dict[str, tuple[list[float], list[float]]]:
    """Wall-clock and CPU (this thread) times of `first` and `second`, called alternately so
    that load from other processes hits both alike, after a few untimed warm-up calls."""
    wall: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    for i in range(warmup + repeats):
        for k, fn in enumerate((first, second)):
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            fn(i)
            if i >= warmup:
                wall[k].append(time.perf_counter() - start_wall)
                cpu[k].append(time.thread_time() - start_cpu)
    return {"wall": wall, "cpu": cpu}


def run_energy_bench(n_terms: int = 20, grid: int = 64, repeats: int = 30, batch: int = 1,
                     channels: int = 64, feature_grid: int = 32, threads: int | None = 1) -> dict:
    """Median forward+backward times of the evaluator and of the hand-written energy."""
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        terms, plan = bench_terms(n_terms)
        evaluator = Evaluator(terms, grid=(grid, grid))
        base = bench_inputs(plan, grid, batch, channels, feature_grid)
        num_steps = 10 ** 6  # a new step every call: orig targets are recomputed, as when sampling

        def by_evaluator(i):
            inputs = _with_grad(base)
            evaluator(i, num_steps, inputs).total.sum().backward()

        def by_hand(i):
            inputs = _with_grad(base)
            hand_written_energy(plan, inputs, grid).sum().backward()

        check = _with_grad(base)
        ours = evaluator(0, num_steps, check).total
        reference = hand_written_energy(plan, check, grid)
        max_diff = float((ours - reference).detach().abs().max())
        times = _alternate(by_evaluator, by_hand, repeats)
        medians = {kind: [statistics.median(t) * 1e3 for t in pair] for kind, pair in times.items()}
        # With one torch thread all work (backward included) runs on this thread, so its CPU
        # time is the measure least disturbed by other processes; else wall-clock time.
        basis = "cpu" if torch.get_num_threads() == 1 else "wall"
        ours_ms, hand_ms = medians[basis]
        return {
            "terms": n_terms, "grid": grid, "batch": batch, "channels": channels, "feature_grid": feature_grid,
            "nodes": len(evaluator._steps), "threads": torch.get_num_threads(), "repeats": repeats,
            "basis": basis, "evaluator_ms": round(ours_ms, 3), "hand_written_ms": round(hand_ms, 3),
            "ratio": round(ours_ms / hand_ms, 3), "target_ratio": 1.1,
            "wall_ms": [round(v, 3) for v in medians["wall"]], "cpu_ms": [round(v, 3) for v in medians["cpu"]],
            "max_abs_diff": max_diff,
        }
    finally:
        torch.set_num_threads(previous_threads)


def format_table(result: dict) -> str:
    lines = [f"energy benchmark: {result['terms']} terms, {result['nodes']} IR nodes, maps "
             f"{result['grid']}×{result['grid']}, batch {result['batch']}, features "
             f"{result['channels']}×{result['feature_grid']}×{result['feature_grid']}, "
             f"{result['threads']} thread(s), forward+backward, medians of {result['repeats']}",
             f"{'':<20}{'wall ms':>10}{'cpu ms':>10}"]
    names = ("evaluator (IR)", "hand-written torch")
    lines += [f"{name:<20}{result['wall_ms'][k]:>10.3f}{result['cpu_ms'][k]:>10.3f}" for k, name in enumerate(names)]
    verdict = "ok" if result["ratio"] <= result["target_ratio"] else "over target"
    lines.append(f"{'ratio (' + result['basis'] + ')':<20}{result['ratio']:>10.3f}   "
                 f"(target ≤ {result['target_ratio']}: {verdict})")
    lines.append(f"{'max |difference|':<20}{result['max_abs_diff']:>10.2e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgl.bench.energy", description=__doc__.splitlines()[0])
    parser.add_argument("--terms", type=int, default=20)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_energy_bench(args.terms, args.grid, args.repeats, batch=args.batch, threads=args.threads)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
