"""Compiled programs through the evaluator: every example evaluates to a finite energy whose
gradient reaches the guided run, the IR passes do not change the energy, and the hand-built
graphs of the bench (sgl.bench.energy.CoreIR) compute what stdlib/core.sgl compiles to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sgl.bench.energy import CoreIR
from sgl.compiler import check_file, check_source
from sgl.runtime.evaluate import Evaluator, Inputs

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.sgl"))
GRID = (8, 8)
B = 2


def random_inputs(keys, seed=0) -> Inputs:
    """A random recorded tensor for every key `needs` lists, fresh leaves for the guided run."""
    gen = torch.Generator().manual_seed(seed)
    attn, feats = {}, {}
    for kind, source, what in sorted(keys, key=repr):
        batch = B if source == "self" else 1
        if kind == "attn":
            value = torch.rand(batch, 4, 4, generator=gen, dtype=torch.float64) ** 3
            attn[(source, what)] = value.requires_grad_(source == "self")
        else:
            value = torch.randn(batch, 3, 4, 4, generator=gen, dtype=torch.float64)
            feats[(source, what)] = value.requires_grad_(source == "self")
    return Inputs(attn, feats)


def all_keys(evaluator: Evaluator, num_steps: int) -> set:
    return set().union(*(evaluator.needs(i, num_steps) for i in range(num_steps)))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_evaluates_with_passes_on_and_off(path):
    optimized, plain = check_file(path), check_file(path, optimize=False)
    fast = Evaluator(optimized.terms, grid=GRID, dtype=torch.float64)
    slow = Evaluator(plain.terms, grid=GRID, dtype=torch.float64)
    num_steps = 10
    inputs = random_inputs(all_keys(fast, num_steps) | all_keys(slow, num_steps))
    for step in (0, 5, 9):
        a, b = fast(step, num_steps, inputs), slow(step, num_steps, inputs)
        assert torch.isfinite(a.total).all()
        assert torch.allclose(a.total, b.total, rtol=1e-9, atol=1e-12), step
    out = fast(0, num_steps, inputs)
    if any(out.active):
        mine = [t for (s, _), t in [*inputs.attn.items(), *inputs.feats.items()] if s == "self"]
        grads = torch.autograd.grad(out.total.sum(), mine, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)


PROPERTIES = ["shape", "size", "centroid", "appearance"]


@pytest.mark.parametrize("prop", PROPERTIES)
def test_core_ir_is_what_core_sgl_compiles_to(prop):
    program = check_source(f'prompt "a photo of a dog and a cat"\n{prop}(dog) = {prop}_0(dog)\n')
    ir = CoreIR()
    hand = ir.l1(getattr(ir, prop)(("dog",)), getattr(ir, prop)(("dog",), "orig"))
    compiled = Evaluator(program.terms, grid=GRID, dtype=torch.float64)
    built = Evaluator([ir.term(hand)], grid=GRID, dtype=torch.float64)
    assert compiled.needs(0, 1) == built.needs(0, 1)
    inputs = random_inputs(compiled.needs(0, 1), seed=1)
    assert torch.allclose(compiled(0, 1, inputs).total, built(0, 1, inputs).total, rtol=1e-12)
