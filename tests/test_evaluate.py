"""The evaluator on hand-built IR graphs: values of hand-computed cases, windows, batching,
caching of other sources, dtypes, and its errors."""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from sgl.bench.energy import CoreIR
from sgl.check.types import FEATURES, MAP, SCALAR, VEC2, VECTOR
from sgl.diagnostics import SGLError, Span
from sgl.ir.nodes import Graph, Term
from sgl.ir.ops import ROUNDING
from sgl.runtime import evaluate as ev
from sgl.runtime.evaluate import Evaluator, Inputs

H, W = 5, 6
DOG = ("dog",)


def one_hot(i, j, h=H, w=W, batch=1, dtype=torch.float64):
    m = torch.zeros(batch, h, w, dtype=dtype)
    m[:, i, j] = 1.0
    return m


def value_of(root, inputs: Inputs, grid=(H, W), dtype=torch.float64, step=0, num_steps=1):
    """The value of one node for the given inputs (wrapped in a one-term program)."""
    evaluator = Evaluator([Term(root, 1.0, (0.0, 1.0), "objective", "objective", "probe")], grid=grid, dtype=dtype)
    return evaluator(step, num_steps, inputs).values[0]


# --- hand-computed values --------------------------------------------------------------------

@pytest.mark.parametrize("i,j", [(0, 0), (2, 3), (4, 5), (1, 4)])
def test_centroid_of_a_one_hot_map_is_the_cell_centre(i, j):
    ir = CoreIR()
    c = ir.centroid(DOG)
    inputs = Inputs({("self", DOG): one_hot(i, j)})
    cx = value_of(ir.op("get_x", SCALAR, c), inputs)
    cy = value_of(ir.op("get_y", SCALAR, c), inputs)
    assert cx.item() == pytest.approx((j + 0.5) / W)
    assert cy.item() == pytest.approx((i + 0.5) / H)


def test_softthr_spans_zero_to_one():
    ir = CoreIR()
    m = torch.rand(2, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.01
    inputs = Inputs({("self", DOG): m})
    shape = ir.shape(DOG)
    lo = value_of(ir.op("min", SCALAR, shape), inputs)
    hi = value_of(ir.op("max", SCALAR, shape), inputs)
    assert torch.allclose(lo, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(hi, torch.ones(2, dtype=torch.float64))


def test_softthr_matches_the_formula():
    m = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]], dtype=torch.float64)
    s = torch.sigmoid(10 * (m - 0.5))
    expected = (s - s.min()) / (s.max() - s.min())
    assert torch.allclose(ev.softthr(m, torch.tensor([10.0], dtype=torch.float64)), expected)


def test_size_of_a_half_filled_map_is_one_half():
    ir = CoreIR()
    m = torch.zeros(1, 4, 6, dtype=torch.float64)
    m[:, :, :3] = 0.02
    size = value_of(ir.size(DOG), Inputs({("self", DOG): m}), grid=(4, 6))
    assert size.item() == pytest.approx(0.5)


def test_appearance_of_a_constant_feature_region_is_that_feature():
    attn = torch.zeros(1, 8, 8, dtype=torch.float64)
    attn[:, 2:6, 1:5] = 1.0
    colour = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    feats = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    feats[:, :, 2:6, 1:5] = colour[:, None, None]
    half = torch.tensor([0.5], dtype=torch.float64)
    assert torch.allclose(ev.pool(feats, ev.hardthr(attn, half)), colour[None])
    # the same through the evaluator: against a reference whose features are that colour everywhere
    ir = CoreIR()
    root = ir.l1(ir.appearance(DOG), ir.appearance(DOG, "ref"))
    inputs = Inputs({("self", DOG): attn, ("ref", DOG): torch.rand(1, 8, 8, dtype=torch.float64)},
                    {("self", "default"): feats, ("ref", "default"): colour[None, :, None, None].expand(1, 3, 8, 8)})
    assert value_of(root, inputs, grid=(8, 8)).item() == pytest.approx(0.0, abs=1e-12)
    feats[:, 0, 3, 3] += 1.0  # one cell of the region differs: the mean moves by 1/16 on channel 0
    assert value_of(root, inputs, grid=(8, 8)).item() == pytest.approx((1 / 16 - ROUNDING / 2) / 3)  # l1's rounding


def test_like_is_one_where_the_features_show_the_vector_and_falls_with_their_distance():
    colour = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    feats = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    feats[:, :, :2, :2] = colour[:, None, None]          # the top-left quarter shows the colour
    width = torch.tensor([0.5], dtype=torch.float64)
    near = ev.like(feats, colour[None], width, grid=(4, 4))
    assert near.shape == (1, 4, 4)
    assert torch.allclose(near[0, :2, :2], torch.ones(2, 2, dtype=torch.float64))
    far = torch.exp(-(colour ** 2).mean() / 0.25)       # the other cells are 0: their distance is mean(colour²)
    assert torch.allclose(near[0, 2:, 2:], far.expand(2, 2))
    wider = ev.like(feats, colour[None], torch.tensor([2.0], dtype=torch.float64), grid=(4, 4))
    assert (wider[0, 2:, 2:] > near[0, 2:, 2:]).all()   # a wider width forgives more distance
    # on the working grid: the feature grid's quarter becomes the finer grid's quarter
    assert ev.like(feats, colour[None], width, grid=(8, 8))[0, :3, :3].min().item() == pytest.approx(1.0)


def test_like_on_finer_features_reads_the_share_of_each_cell_that_shows_the_vector():
    """A picture finer than the working grid (`pixels()`: 64×64 against 16×16) is reduced by
    area: a cell half covered by the colour reads one half, so the mean of the map is the area
    the colour covers, to the pixel (bilinear reduction would read only the pixels nearest each
    cell centre)."""
    colour = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    picture = torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    picture[:, :, 2:9, 1:6] = colour[:, None, None]     # 7 × 5 pixels: rows half into the 3rd cell
    near = ev.like(picture, colour[None], torch.tensor([0.05], dtype=torch.float64), grid=(4, 4))
    assert near.mean().item() == pytest.approx(35 / 256, abs=1e-9)
    assert near[0, 2, 0].item() == pytest.approx(0.25 * 0.75) and near[0, 0, 0].item() == pytest.approx(0.5 * 0.75)


def test_appearance_mask_is_resampled_to_the_feature_grid():
    ir = CoreIR()
    attn = torch.zeros(1, 8, 8, dtype=torch.float64)
    attn[:, :, :4] = 1.0                     # left half on the 8×8 working grid
    feats = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    feats[:, :, :, :2] = 5.0                 # left half of a 4×4 feature grid
    app = ir.appearance(DOG)
    value = value_of(ir.op("norm", SCALAR, app), Inputs({("self", DOG): attn}, {("self", "default"): feats}),
                     grid=(8, 8))
    assert value.item() == pytest.approx(5.0)


def test_shift_by_one_cell_moves_a_one_hot_map():
    m = one_hot(2, 3)
    right = ev.shift(m, torch.tensor([[1 / W, 0.0]], dtype=torch.float64))
    down = ev.shift(m, torch.tensor([[0.0, 1 / H]], dtype=torch.float64))
    assert torch.allclose(right, one_hot(2, 4))
    assert torch.allclose(down, one_hot(3, 3))


def test_shift_fills_with_zero():
    m = torch.ones(1, H, W, dtype=torch.float64)
    out = ev.shift(m, torch.tensor([[2 / W, 0.0]], dtype=torch.float64))
    expected = torch.ones(1, H, W, dtype=torch.float64)
    expected[:, :, :2] = 0.0
    assert torch.allclose(out, expected)


def test_scale_about_the_centroid():
    m = torch.zeros(1, 16, 16, dtype=torch.float64)
    m[:, 6:10, 6:10] = 1.0
    same = ev.scale(m, torch.tensor([1.0], dtype=torch.float64))
    assert torch.allclose(same, m)
    bigger = ev.scale(m, torch.tensor([2.0], dtype=torch.float64))
    assert bigger.sum().item() == pytest.approx(4 * m.sum().item(), rel=0.1)
    xs, ys = ev.cell_centres((16, 16), torch.float64, torch.device("cpu"))
    assert ((bigger * xs).sum() / bigger.sum()).item() == pytest.approx(0.5)
    assert ((bigger * ys).sum() / bigger.sum()).item() == pytest.approx(0.5)


def scalars(*values):
    return [torch.tensor([v], dtype=torch.float64) for v in values]


def test_box_coverage_sums_to_the_box_area():
    cover = ev.box(*scalars(0.1, 0.2, 0.55, 0.7), grid=(H, W))
    assert cover.mean().item() == pytest.approx(0.45 * 0.5)
    assert cover.min() >= 0 and cover.max() <= 1
    assert cover[0, 2, 2].item() == pytest.approx(1.0) and cover[0, 0, 5].item() == 0.0


def test_box_outside_the_image_is_clipped_and_an_empty_box_is_zero():
    assert ev.box(*scalars(-0.5, -0.5, 0.5, 0.5), grid=(4, 4)).mean().item() == pytest.approx(0.25)
    assert ev.box(*scalars(0.6, 0.2, 0.4, 0.7), grid=(4, 4)).abs().sum().item() == 0.0


def test_circle_area():
    centre = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    disc = ev.circle(centre, torch.tensor([0.25], dtype=torch.float64), grid=(32, 32))
    assert disc.mean().item() == pytest.approx(math.pi * 0.25 ** 2, rel=0.01)
    assert disc[0, 16, 16].item() == 1.0 and disc[0, 0, 0].item() == 0.0


def test_coordinate_maps_are_cell_centres():
    x = ev.x(grid=(H, W), dtype=torch.float64, device=torch.device("cpu"))
    y = ev.y(grid=(H, W), dtype=torch.float64, device=torch.device("cpu"))
    assert x.shape == (1, H, W) and y.shape == (1, H, W)
    assert x[0, 3, 2].item() == pytest.approx(2.5 / W) and y[0, 3, 2].item() == pytest.approx(3.5 / H)


def test_hardthr_threshold():
    m = torch.tensor([[[0.0, 0.3], [0.7, 1.0]]], dtype=torch.float64)
    assert ev.hardthr(m, torch.tensor([0.5], dtype=torch.float64)).tolist() == [[[0.0, 0.0], [1.0, 1.0]]]
    assert ev.hardthr(m, torch.tensor([0.2], dtype=torch.float64)).tolist() == [[[0.0, 1.0], [1.0, 1.0]]]


def test_distances():
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 4.0], [3.0, 0.0]], dtype=torch.float64)
    # l1: mean |a − b|, less ROUNDING / 2 per element past the rounded kink (a parabola below it)
    assert ev.l1(a, b).tolist() == pytest.approx([1.5 - ROUNDING / 2, 1.5 - ROUNDING / 4])
    assert ev.l2(a, b).tolist() == [2.5, 4.5]
    assert ev.l1(torch.tensor([1.0, 2.0]), torch.tensor([3.0])).tolist() == pytest.approx([2.0 - ROUNDING / 2, 1.0 - ROUNDING / 2])


def test_mask_reads_a_grayscale_png(tmp_path):
    from PIL import Image

    image = Image.new("L", (8, 4), 0)
    image.paste(255, (0, 0, 4, 4))  # left half white
    path = tmp_path / "sketch.png"
    image.save(path)
    m = ev.mask(arg=str(path), grid=(4, 8), dtype=torch.float64, device=torch.device("cpu"))
    assert m.shape == (1, 4, 8)
    assert torch.all(m[:, :, :4] == 1) and torch.all(m[:, :, 4:] == 0)


def test_a_missing_mask_fails_when_the_evaluator_is_built_with_the_term_span(tmp_path):
    g = Graph()
    m = g.node("mask", MAP, arg=str(tmp_path / "nothing.png"))
    root = g.node("mean", SCALAR, (m,))
    span = Span("prog.sgl", 3, 1, 3, 20)
    with pytest.raises(SGLError) as err:
        Evaluator([Term(root, 1.0, (0.0, 1.0), "objective", "objective", "t", span)], grid=(4, 4))
    assert err.value.diagnostics[0].code == "E240"
    assert err.value.diagnostics[0].span == span
    assert "nothing.png" in err.value.diagnostics[0].message


def test_an_unknown_op_is_an_sgl_error():
    g = Graph()
    root = g.node("frobnicate", SCALAR)
    with pytest.raises(SGLError) as err:
        Evaluator([Term(root, 1.0, (0.0, 1.0), "objective", "objective", "t")])
    assert err.value.diagnostics[0].code == "E241"


def test_a_missing_input_is_an_sgl_error():
    ir = CoreIR()
    evaluator = Evaluator([ir.term(ir.size(DOG))], grid=(H, W))
    with pytest.raises(SGLError) as err:
        evaluator(0, 10, Inputs({("self", ("cat",)): one_hot(0, 0)}))
    assert err.value.diagnostics[0].code == "E242" and "`dog`" in err.value.diagnostics[0].message


# --- terms, windows, batching ----------------------------------------------------------------

def windowed_program():
    ir = CoreIR()
    early = ir.term(ir.l1(ir.size(DOG), ir.const(0.1)), weight=2.0, window=(0.0, 0.5))
    late = ir.term(ir.l1(ir.centroid(("cat",)), ir.vec(0.5, 0.5)), weight=3.0, window=(0.5, 1.0))
    return Evaluator([early, late], grid=(H, W), dtype=torch.float64)


def random_maps(batch=1, seed=0, h=H, w=W):
    gen = torch.Generator().manual_seed(seed)
    return {("self", DOG): torch.rand(batch, h, w, generator=gen, dtype=torch.float64),
            ("self", ("cat",)): torch.rand(batch, h, w, generator=gen, dtype=torch.float64)}


def test_windows_switch_terms_on_and_off():
    evaluator = windowed_program()
    inputs = Inputs(random_maps())
    early = evaluator(0, 10, inputs)
    late = evaluator(5, 10, inputs)
    last = evaluator(9, 10, inputs)
    assert early.active == (True, False) and late.active == (False, True) and last.active == (False, True)
    assert torch.allclose(early.total, 2.0 * early.values[0])
    assert torch.allclose(late.total, 3.0 * late.values[1])


def test_needs_lists_only_what_active_terms_read():
    evaluator = windowed_program()
    assert evaluator.needs(0, 10) == {("attn", "self", DOG)}
    assert evaluator.needs(7, 10) == {("attn", "self", ("cat",))}
    ir = CoreIR()
    never = Evaluator([ir.term(ir.size(DOG), window=(0.2, 0.4))])
    assert never.needs(9, 10) == set()


def test_no_active_term_gives_zero_energy():
    ir = CoreIR()
    evaluator = Evaluator([ir.term(ir.size(DOG), window=(0.2, 0.4))], grid=(H, W))
    out = evaluator(9, 10, Inputs(random_maps(batch=3)))
    assert out.total.tolist() == [0.0, 0.0, 0.0] and out.values == (None,)


def test_batching_gives_the_same_values_as_single_evaluation():
    ir = CoreIR()
    terms = [ir.term(ir.l1(ir.size(DOG), ir.size(DOG, "orig"))),
             ir.term(ir.l1(ir.centroid(("cat",)), ir.op("add", VEC2, ir.centroid(("cat",), "orig"), ir.vec(0.2, 0))),
                     weight=2.0),
             ir.term(ir.l1(ir.shape(DOG), ir.shape(DOG, "orig")), weight=0.5)]
    evaluator = Evaluator(terms, grid=(H, W), dtype=torch.float64)
    maps = random_maps(batch=3, seed=4)
    orig = {("orig", k[1]): v.flip(-1) for k, v in maps.items()}
    batched = evaluator(0, 10, Inputs({**maps, **orig}))
    for b in range(3):
        single = evaluator(1 + b, 10, Inputs({k: v[b:b + 1] for k, v in {**maps, **orig}.items()}))
        assert torch.allclose(single.total, batched.total[b:b + 1])
        for one, many in zip(single.values, batched.values):
            assert torch.allclose(one, many[b:b + 1])


def test_constants_and_single_row_sources_broadcast_over_the_batch():
    ir = CoreIR()
    evaluator = Evaluator([ir.term(ir.l1(ir.centroid(DOG), ir.centroid(DOG, "ref")))], grid=(H, W),
                          dtype=torch.float64)
    out = evaluator(0, 1, Inputs({("self", DOG): one_hot(0, 0, batch=2), ("ref", DOG): one_hot(0, 1)}))
    assert out.total.shape == (2,)
    assert torch.allclose(out.total, torch.full((2,), 0.5 / W - ROUNDING / 4, dtype=torch.float64))  # x off by 1/W


def test_fp16_inputs_give_finite_fp32_energies_and_gradients():
    ir = CoreIR()
    terms = [ir.term(ir.l1(ir.shape(DOG), ir.shape(DOG, "orig"))), ir.term(ir.l1(ir.size(DOG), ir.const(0.3))),
             ir.term(ir.l1(ir.centroid(DOG), ir.vec(0.7, 0.2))),
             ir.term(ir.l1(ir.appearance(DOG), ir.appearance(DOG, "orig")))]
    evaluator = Evaluator(terms, grid=(8, 8))
    gen = torch.Generator().manual_seed(3)
    for half in (torch.float16, torch.bfloat16):
        mine = (torch.rand(2, 4, 4, generator=gen) * 1e-3).to(half).requires_grad_(True)
        feats = torch.randn(2, 8, 4, 4, generator=gen).to(half).requires_grad_(True)
        out = evaluator(0, 1, Inputs({("self", DOG): mine, ("orig", DOG): torch.rand(1, 4, 4).to(half)},
                                     {("self", "default"): feats, ("orig", "default"): torch.randn(1, 8, 4, 4).to(half)}))
        assert out.total.dtype == torch.float32 and torch.isfinite(out.total).all()
        out.total.sum().backward()
        assert mine.grad.dtype == half and torch.isfinite(mine.grad).all() and mine.grad.abs().sum() > 0
        assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_gradients_reach_only_the_guided_run():
    ir = CoreIR()
    evaluator = Evaluator([ir.term(ir.l1(ir.centroid(DOG), ir.centroid(DOG, "orig")))], grid=(H, W),
                          dtype=torch.float64)
    mine = torch.rand(1, H, W, dtype=torch.float64).requires_grad_(True)
    theirs = torch.rand(1, H, W, dtype=torch.float64).requires_grad_(True)
    out = evaluator(0, 1, Inputs({("self", DOG): mine, ("orig", DOG): theirs}))
    out.total.sum().backward()
    assert mine.grad is not None and mine.grad.abs().sum() > 0
    assert theirs.grad is None


# --- evaluation work: memoised, resampled once, other sources cached per step ----------------

def test_each_input_is_resampled_once_per_call(monkeypatch):
    calls = []
    real = ev.resample

    def counting(m, grid):
        calls.append(tuple(m.shape))
        return real(m, grid)

    monkeypatch.setattr(ev, "resample", counting)
    ir = CoreIR()
    terms = [ir.term(ir.l1(ir.centroid(DOG), ir.centroid(DOG, "orig"))),
             ir.term(ir.l1(ir.size(DOG), ir.size(DOG, "orig"))),
             ir.term(ir.l1(ir.shape(DOG), ir.shape(DOG, "orig")))]
    evaluator = Evaluator(terms, grid=(H, W), dtype=torch.float64)
    orig = torch.rand(1, 3, 4, dtype=torch.float64)
    inputs = Inputs({("self", DOG): torch.rand(1, 3, 4, dtype=torch.float64), ("orig", DOG): orig})
    evaluator(0, 10, inputs)
    assert len(calls) == 2  # self and orig, shared by the three terms
    evaluator(0, 10, inputs)
    assert len(calls) == 3  # same step, same orig tensor: only self again
    evaluator(1, 10, inputs)
    assert len(calls) == 5  # a new step recomputes orig


def test_the_orig_cache_notices_new_or_modified_tensors():
    ir = CoreIR()
    evaluator = Evaluator([ir.term(ir.l1(ir.size(DOG), ir.size(DOG, "orig")))], grid=(H, W), dtype=torch.float64)
    mine = torch.zeros(1, H, W, dtype=torch.float64)
    mine[:, :, :3] = 1.0  # size 0.5
    orig = torch.zeros(1, H, W, dtype=torch.float64)
    orig[:, :, :2] = 1.0  # size 1/3
    first = evaluator(0, 10, Inputs({("self", DOG): mine, ("orig", DOG): orig}))
    assert first.total.item() == pytest.approx(0.5 - 1 / 3 - ROUNDING / 2)
    orig[:, :, :] = 0.0
    orig[:, :, :1] = 1.0  # modified in place: size 1/6
    second = evaluator(0, 10, Inputs({("self", DOG): mine, ("orig", DOG): orig}))
    assert second.total.item() == pytest.approx(0.5 - 1 / 6 - ROUNDING / 2)
    replaced = torch.zeros(1, H, W, dtype=torch.float64)
    replaced[:, :, :3] = 1.0  # a new tensor: size 0.5
    third = evaluator(0, 10, Inputs({("self", DOG): mine, ("orig", DOG): replaced}))
    assert third.total.item() == pytest.approx(0.0)


def test_shared_subgraphs_are_evaluated_once(monkeypatch):
    calls = []
    real = ev.INTRINSICS["softthr"]
    monkeypatch.setitem(ev.INTRINSICS, "softthr", lambda m, k: calls.append(1) or real(m, k))
    ir = CoreIR()
    terms = [ir.term(ir.l1(ir.size(DOG), ir.const(0.2))), ir.term(ir.l1(ir.shape(DOG), ir.op("x", MAP)))]
    evaluator = Evaluator(terms, grid=(H, W), dtype=torch.float64)
    evaluator(0, 1, Inputs(random_maps()))
    assert len(calls) == 1


def test_deep_graphs_do_not_recurse():
    g = Graph()
    node = g.node("attn", MAP, arg=("self", DOG))
    for _ in range(5000):
        node = g.node("neg", MAP, (node,))
    root = g.node("mean", SCALAR, (node,))
    evaluator = Evaluator([Term(root, 1.0, (0.0, 1.0), "objective", "objective", "deep")], grid=(H, W))
    m = torch.rand(1, H, W)
    assert evaluator(0, 1, Inputs({("self", DOG): m})).total.item() == pytest.approx(m.mean().item(), rel=1e-5)


def test_fixed_constant_maps_are_computed_once(monkeypatch):
    ir = CoreIR()
    term = ir.term(ir.l1(ir.shape(DOG), ir.op("box", MAP, ir.const(0.1), ir.const(0.1), ir.const(0.6), ir.const(0.6))))
    evaluator = Evaluator([term], grid=(H, W), dtype=torch.float64)
    calls = []
    monkeypatch.setattr(ev, "_edge_coverage", lambda *a: calls.append(1))  # would break if called
    first = evaluator(0, 2, Inputs(random_maps()))
    second = evaluator(1, 2, Inputs(random_maps()))
    assert calls == [] and torch.allclose(first.total, second.total)


def test_inputs_of_the_wrong_batch_or_rank_are_an_sgl_error():
    ir = CoreIR()
    evaluator = Evaluator([ir.term(ir.l1(ir.size(DOG), ir.size(DOG, "orig")))], grid=(H, W))
    with pytest.raises(SGLError) as err:
        evaluator(0, 1, Inputs({("self", DOG): torch.rand(3, H, W), ("orig", DOG): torch.rand(2, H, W)}))
    assert err.value.diagnostics[0].code == "E243"
    with pytest.raises(SGLError) as err:
        evaluator(0, 1, Inputs({("self", DOG): torch.rand(H, W), ("orig", DOG): torch.rand(1, H, W)}))
    assert err.value.diagnostics[0].code == "E243"


def test_vectors_of_different_lengths_are_an_sgl_error_at_the_term():
    # appearance(dog) = colour₀(dog): 8 feature channels against the latent's 4
    ir = CoreIR()
    half = ir.op("hardthr", MAP, ir.attn(DOG, "orig"), ir.const(0.5))
    colour = ir.op("pool", VECTOR, ir.g.node("latent", FEATURES, arg=("orig", "latent")), half)
    span = Span("prog.sgl", 5, 1, 5, 32)
    term = attrs.evolve(ir.term(ir.l1(ir.appearance(DOG), colour)), span=span)
    maps = {("self", DOG): torch.rand(1, H, W), ("orig", DOG): torch.rand(1, H, W)}
    feats = {("self", "default"): torch.rand(1, 8, H, W), ("orig", "latent"): torch.rand(1, 4, H, W)}
    with pytest.raises(SGLError) as err:
        Evaluator([term], grid=(H, W))(0, 1, Inputs(maps, feats))
    d = err.value.diagnostics[0]
    assert d.code == "E244" and d.span == span
    assert "(1, 8)" in d.message and "(1, 4)" in d.message and "latent()" in d.hint


def test_a_large_mask_is_area_averaged_and_a_small_one_upsampled(tmp_path):
    from PIL import Image

    big = Image.new("L", (64, 64), 0)
    big.paste(255, (0, 0, 16, 64))  # the left quarter is white
    big.save(tmp_path / "big.png")
    m = ev.mask(arg=str(tmp_path / "big.png"), grid=(4, 6), dtype=torch.float64, device=torch.device("cpu"))
    assert m.shape == (1, 4, 6)
    assert m.mean().item() == pytest.approx(0.25, abs=1e-6)  # coverage kept: 1.5 of 6 columns
    assert m[0, 0].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0, 0.0], abs=1e-6)
    small = Image.new("L", (2, 2), 255)
    small.save(tmp_path / "small.png")
    up = ev.mask(arg=str(tmp_path / "small.png"), grid=(4, 6), dtype=torch.float64, device=torch.device("cpu"))
    assert torch.allclose(up, torch.ones(1, 4, 6, dtype=torch.float64))


def test_every_evaluator_code_is_explained():
    import inspect
    import re

    raised = set(re.findall(r'SGLError\.single\(\s*"(E\d+)"', inspect.getsource(ev)))
    assert raised == {"E240", "E241", "E242", "E243", "E244"}
    assert raised <= set(ev.EXPLANATIONS)
    from sgl.cli import explanations  # what `sgl explain CODE` finds

    assert {code: explanations().get(code) for code in raised} == {code: ev.EXPLANATIONS[code] for code in raised}
