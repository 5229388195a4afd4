"""The scene generator of the embedded `shapes` model and the pixel measurements (no torch)."""

import numpy as np
import pytest

from sgl.models.shapes import data, measure


def test_deterministic_per_seed():
    a, b = data.render_scene(123), data.render_scene(123)
    assert a.caption == b.caption
    assert np.array_equal(a.image, b.image)
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects))
    assert data.render_scene(124).caption != a.caption or not np.array_equal(data.render_scene(124).image, a.image)


@pytest.mark.parametrize("seed", range(40))
def test_scene_records_match_pixels(seed):
    sc = data.render_scene(seed)
    assert sc.image.shape == (64, 64, 3) and sc.image.dtype == np.uint8
    assert 1 <= len(sc.objects) <= 3
    assert len({o.colour for o in sc.objects}) == len(sc.objects)  # colours distinct
    assert len({o.shape for o in sc.objects}) == len(sc.objects)  # shapes distinct
    assert sc.background not in data.PALETTE.values()
    h, w = sc.image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    union = np.zeros((h, w), int)
    for o in sc.objects:
        m = o.mask
        assert m.any()
        union += m
        assert abs(m.mean() - o.area) < 1e-9
        cx, cy = (xs[m] + 0.5).mean() / w, (ys[m] + 0.5).mean() / h
        assert abs(cx - o.centroid[0]) < 1e-6 and abs(cy - o.centroid[1]) < 1e-6
        # the masked pixels carry the object's colour (interior exactly, edges blended)
        inner = measure.core(measure.core(m))
        if inner.any():
            assert np.abs(sc.image[inner].astype(int) - data.PALETTE[o.colour]).max() <= 1
        # the drawing centre is inside the object's bounding box
        assert abs(o.center[0] - o.centroid[0]) < o.radius and abs(o.center[1] - o.centroid[1]) < o.radius
    assert union.max() <= 1  # masks are disjoint
    bgpix = union == 0
    assert np.abs(sc.image[measure.core(measure.core(bgpix))].astype(int) - sc.background).max() <= 1


def test_caption_and_word_positions():
    objs = data.render_scene(5, n_objects=3).objects
    cap = data.caption_of(objs)
    words = cap.split()
    assert all(w in data.VOCABULARY for w in words)
    tokens = ["<bos>"] + words
    for o, pos in zip(objs, data.word_positions(objs)):
        assert tokens[pos["colour"]] == o.colour and tokens[pos["shape"]] == o.shape
        if o.size:
            assert tokens[pos["size"]] == o.size
    assert len(tokens) + 1 <= data.MAX_TOKENS
    assert "an orange" in data.caption_of([data.SceneObject("orange", "star", None, (0.5, 0.5), 0.1, np.zeros((1, 1), bool))])


def test_vague_captions_leave_words_out_but_never_change_the_picture():
    for seed in range(20):
        full, vague, none = (data.render_scene(seed, vague=v) for v in (0.0, 0.5, 1.0))
        assert np.array_equal(full.image, vague.image) and np.array_equal(full.image, none.image)
        assert none.caption == " and ".join("a " + o.shape for o in full.objects)  # only shape words
        assert all(o.says_size and o.says_colour for o in full.objects)
        for o, pos in zip(vague.objects, data.word_positions(vague.objects)):
            tokens = ["<bos>"] + vague.caption.split()
            assert tokens[pos["shape"]] == o.shape
            assert ("colour" in pos) == o.says_colour and ("size" in pos) == bool(o.size and o.says_size)
            if "colour" in pos:
                assert tokens[pos["colour"]] == o.colour
    left_out = sum(not o.says_colour for s in range(200) for o in data.render_scene(s, vague=0.3).objects)
    total = sum(len(data.render_scene(s).objects) for s in range(200))
    assert 0.2 < left_out / total < 0.4
    cache = data.build_cache(range(30), vague=1.0)
    assert (cache["tokpos"][:, :, 0] == -1).all() and (cache["tokpos"][:, :, 2] == -1).all()


def test_vaguer_drops_only_what_it_is_asked_to():
    o = data.render_scene(3, n_objects=1).objects[0]
    assert o.vaguer(size=True).words == [o.colour, o.shape]
    assert o.vaguer(size=False, colour=True).words == ([o.size] if o.size else []) + [o.shape]
    assert o.words == ([o.size] if o.size else []) + [o.colour, o.shape]


def test_vocabulary_is_rich_enough():
    assert len(data.COLOURS) >= 6 and len(data.SHAPES) >= 4
    pal = np.array(list(data.PALETTE.values()), float)
    d = np.linalg.norm(pal[:, None] - pal[None], axis=-1) + np.eye(len(pal)) * 1e9
    assert d.min() > 60


def test_cache_arrays():
    c = data.build_cache(range(10))
    assert c["images"].shape == (10, 64, 64, 3) and c["labels"].shape == (10, 64, 64)
    for k in range(10):
        sc = data.render_scene(k)
        assert c["captions"][k] == sc.caption
        assert np.array_equal(c["labels"][k], sc.labels)
        assert (c["tokpos"][k, len(sc.objects):] == -1).all()


@pytest.mark.parametrize("seed", range(60))
def test_measure_finds_rendered_objects(seed):
    sc = data.render_scene(seed)
    seg = measure.segment(sc.image)
    for o in sc.objects:
        b = seg[o.colour]
        assert b.present
        assert abs(b.centroid[0] - o.centroid[0]) + abs(b.centroid[1] - o.centroid[1]) < 0.01
        assert abs(b.area / o.area - 1) < 0.05
        assert b.shape == o.shape
        assert (b.mask & o.mask).sum() / (b.mask | o.mask).sum() > 0.9
    for c in data.COLOURS:
        if c not in {o.colour for o in sc.objects}:
            assert not seg[c].present


def test_cleanliness_sees_noise():
    img = data.render_scene(3).image
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    assert measure.cleanliness(noisy) > 5 * measure.cleanliness(img)


def test_vague_size_and_colour_probabilities_apart():
    """(size, colour): sizes left out with their own probability, colours exactly as with the
    same single probability (one random stream for both)."""
    for seed in range(40):
        same = data.render_scene(seed, vague=0.3)
        split = data.render_scene(seed, vague=(1.0, 0.3))
        assert [o.says_colour for o in split.objects] == [o.says_colour for o in same.objects]
        assert not any(o.says_size for o in split.objects)
        assert np.array_equal(split.image, same.image)
    kept = data.render_scene(7, vague=(0.0, 1.0))
    assert all(o.says_size for o in kept.objects) and not any(o.says_colour for o in kept.objects)
