"""Properties of the intrinsics on random inputs (hypothesis): invariants that hand-picked
cases could miss."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgl.runtime import evaluate as ev

F64 = torch.float64
FAST = settings(max_examples=25, deadline=None)


@st.composite
def maps(draw, batch=None, h=None, w=None):
    b = batch or draw(st.integers(1, 3))
    h = h or draw(st.integers(2, 7))
    w = w or draw(st.integers(2, 7))
    seed = draw(st.integers(0, 2 ** 16))
    return torch.rand(b, h, w, dtype=F64, generator=torch.Generator().manual_seed(seed))


def scalar(v, batch=1):
    return torch.full((batch,), float(v), dtype=F64)


@FAST
@given(maps())
def test_normalize_is_idempotent_and_spans_zero_to_one(m):
    n = ev.normalize(m)
    assert torch.allclose(ev.normalize(n), n)
    assert torch.allclose(n.amin(dim=(1, 2)), torch.zeros(m.shape[0], dtype=F64))
    assert torch.allclose(n.amax(dim=(1, 2)), torch.ones(m.shape[0], dtype=F64))


@FAST
@given(maps(), st.floats(1, 30))
def test_softthr_is_a_monotone_map_onto_zero_one(m, k):
    s = ev.softthr(m, scalar(k))
    assert s.min() >= 0 and s.max() <= 1
    flat_m, flat_s = m.reshape(m.shape[0], -1), s.reshape(m.shape[0], -1)
    order = flat_m.argsort(dim=1)
    assert torch.all(flat_s.gather(1, order).diff(dim=1) >= -1e-12)  # order preserved


@FAST
@given(st.integers(0, 3), st.integers(0, 3), st.integers(-2, 2), st.integers(-2, 2))
def test_shifting_by_whole_cells_moves_the_centroid_by_the_shift(i, j, di, dj):
    h, w = 10, 10  # the two cells stay inside after any shift
    m = torch.zeros(1, h, w, dtype=F64)
    m[0, 2 + i, 3 + j] = 1.0
    m[0, 3 + i, 3 + j] = 0.5
    by = torch.tensor([[dj / w, di / h]], dtype=F64)
    moved = ev.shift(m, by)
    xs, ys = ev.cell_centres((h, w), F64, torch.device("cpu"))

    def centroid(a):
        return torch.stack(((a * xs).sum() / a.sum(), (a * ys).sum() / a.sum()))

    assert torch.allclose(moved.sum(), m.sum())
    assert torch.allclose(centroid(moved), centroid(m) + by[0])


@FAST
@given(st.floats(-0.3, 1.3), st.floats(-0.3, 1.3), st.floats(-0.3, 1.3), st.floats(-0.3, 1.3))
def test_box_mean_is_the_clipped_area(x0, y0, x1, y1):
    cover = ev.box(scalar(x0), scalar(y0), scalar(x1), scalar(y1), grid=(6, 9))

    def clipped(lo, hi):
        return max(0.0, min(hi, 1.0) - max(lo, 0.0))

    assert cover.mean().item() == pytest.approx(clipped(x0, x1) * clipped(y0, y1), abs=1e-9)


BATCHED = {
    "normalize": lambda m: ev.normalize(m),
    "softthr": lambda m: ev.softthr(m, scalar(10)),
    "hardthr": lambda m: ev.hardthr(m, scalar(0.5)),
    "shift": lambda m: ev.shift(m, torch.tensor([[0.13, -0.07]], dtype=F64)),
    "scale": lambda m: ev.scale(m, scalar(1.4)),
    "sum": lambda m: ev.sum_(m),
    "max": lambda m: ev.max_(m),
    "l1": lambda m: ev.l1(m, m.flip(-1)),
    "l2": lambda m: ev.l2(m, m.flip(-2)),
    "pool": lambda m: ev.pool(torch.stack((m, m * m), dim=1), m),
    "like": lambda m: ev.like(torch.stack((m, m * m), dim=1), m.mean(dim=(1, 2))[:, None].expand(-1, 2),
                              scalar(0.5), grid=(7, 5)),
}


@FAST
@given(maps(batch=3), st.sampled_from(sorted(BATCHED)))
def test_every_batch_element_is_computed_on_its_own(m, name):
    fn = BATCHED[name]
    together = fn(m)
    for b in range(m.shape[0]):
        assert torch.allclose(together[b:b + 1], fn(m[b:b + 1]))
