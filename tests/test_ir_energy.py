"""IR passes keep the energy: random programs, lowered with and without the passes, give the
same energy and the same gradient on the same recorded maps (the evaluator as the oracle)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from sgl.compiler import check_source  # noqa: E402
from sgl.ir.verify import verify  # noqa: E402
from sgl.runtime.evaluate import Evaluator, Inputs  # noqa: E402

PROMPT = 'prompt "a dog and a cat"\nuse edits\n'
OBJECTS = ("dog", "cat")
GRID = (6, 6)
CHANNELS = 3


def _scalars(depth: int):
    """SGL text of a random Scalar expression (no division by anything that may be zero)."""
    number = st.sampled_from(["0", "1", "0.5", "2", "0.25"])
    obj = st.sampled_from(OBJECTS)
    src = st.sampled_from(["", "₀"])
    reads = st.one_of(
        st.tuples(obj, src).map(lambda t: f"size{t[1]}({t[0]})"),
        st.tuples(obj, src, st.sampled_from("xy")).map(lambda t: f"centroid{t[1]}({t[0]}).{t[2]}"),
        st.tuples(obj, src).map(lambda t: f"max(attn{t[1]}({t[0]}))"),
        st.tuples(obj, src).map(lambda t: f"norm(centroid{t[1]}({t[0]}) - (0.5, 0.5))"),
        st.tuples(obj, obj).map(lambda t: f"overlap({t[0]}, {t[1]})"),
    )
    leaf = st.one_of(number, reads)
    if depth == 0:
        return leaf
    sub = _scalars(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from("+-*"), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda e: f"-{e}"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]}, {t[1]}).x"),
        st.tuples(sub, obj).map(lambda t: f"({t[0]} / sum(attn({t[1]})))"),
    )


def _statements():
    """Random constraint lines; the left side always reads the generated image."""
    e = _scalars(2)
    own = st.tuples(st.sampled_from(["size", "max(attn", "centroid"]), st.sampled_from(OBJECTS)).map(
        lambda t: {"size": f"size({t[1]})", "max(attn": f"max(attn({t[1]}))", "centroid": f"centroid({t[1]}).x"}[t[0]])
    lhs = st.tuples(own, st.sampled_from(["+", "*", "-"]), e).map(lambda t: f"{t[0]} {t[1]} {t[2]}")
    window = st.sampled_from(["", " from 0% to 50%", " from 50% to 100%", " from 20% to 30%"])
    weight = st.sampled_from(["", " weight 2", " weight 0", " weight 0.5"])
    obj = st.sampled_from(OBJECTS)
    return st.one_of(
        st.tuples(lhs, e, st.sampled_from(["", " using l2"]), weight, window).map(
            lambda t: f"{t[0]} = {t[1]}{t[2]}{t[3]}{t[4]}"),
        st.tuples(lhs, st.sampled_from("<>"), e, st.sampled_from(["", " margin 0.1"]), window).map(
            lambda t: f"{t[0]} {t[1]} {t[2]}{t[3]}{t[4]}"),
        st.tuples(st.sampled_from(["minimize", "maximize"]), lhs, weight).map(lambda t: f"{t[0]} {t[1]}{t[2]}"),
        st.tuples(obj, st.sampled_from(["0", "0.2", "-0.1"]), weight, window).map(
            lambda t: f"move({t[0]}, ({t[1]}, 0)){t[2]}{t[3]}"),
        st.tuples(obj, window).map(lambda t: f"keep({t[0]}){t[1]}"),
    )


def _inputs(seed: int, grad: bool) -> Inputs:
    gen = torch.Generator().manual_seed(seed)
    attn, feats = {}, {}
    for source in ("self", "orig"):
        for word in OBJECTS:
            m = torch.rand(1, *GRID, generator=gen, dtype=torch.float64) + 0.05
            attn[(source, (word,))] = m.requires_grad_(grad and source == "self")
        f = torch.randn(1, CHANNELS, *GRID, generator=gen, dtype=torch.float64)
        feats[(source, "default")] = f.requires_grad_(grad and source == "self")
    return Inputs(attn, feats)


def _energy(program, step: int, seed: int):
    inputs = _inputs(seed, grad=True)
    out = Evaluator(program.terms, grid=GRID, dtype=torch.float64)(step, 10, inputs)
    live = [t for t in (*inputs.attn.values(), *inputs.feats.values()) if t.requires_grad]
    grads = torch.autograd.grad(out.total.sum(), live, allow_unused=True) if out.total.requires_grad else [None] * len(live)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(live, grads)]
    return out.total.detach(), grads


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_statements(), min_size=1, max_size=4), st.integers(0, 9), st.integers(0, 2**16))
def test_passes_keep_energy_and_gradient(statements, step, seed):
    text = PROMPT + "\n".join(statements) + "\n"
    plain = check_source(text, file="fuzz.sgl", optimize=False)
    optimized = check_source(text, file="fuzz.sgl")
    verify(plain.terms)
    verify(optimized.terms)
    total_plain, grads_plain = _energy(plain, step, seed)
    total_opt, grads_opt = _energy(optimized, step, seed)
    torch.testing.assert_close(total_opt, total_plain)
    for a, b in zip(grads_opt, grads_plain):
        torch.testing.assert_close(a, b)
