"""Prompt words, noun phrases, objects()/others(), and did-you-mean."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from sgl.check.program import ObjectInfo
from sgl.check.words import noun_phrases, others, prompt_objects, words_of
from sgl.suggest import did_you_mean, edit_distance


def test_words_are_lower_cased_runs_of_letters():
    assert words_of("A Red-Circle, 2 blue squares!") == ("a", "red", "circle", "blue", "squares")


def test_noun_phrases_split_at_stop_words():
    assert noun_phrases("a red circle and a blue square") == (("red", "circle"), ("blue", "square"))
    assert noun_phrases("a photo of a dog next to a cat on the beach") == (("dog",), ("cat",), ("beach",))
    assert noun_phrases("the and of") == ()


def test_each_phrase_is_an_object_named_by_its_last_word():
    objs = prompt_objects("a big red circle and a blue square")
    assert [(o.name, o.words) for o in objs] == [("circle", ("big", "red", "circle")), ("square", ("blue", "square"))]
    assert not any(o.declared for o in objs)


def test_a_declared_object_replaces_the_phrases_it_overlaps():
    car = ObjectInfo("car", "red car", ("red", "car"), declared=True)
    objs = prompt_objects("a red car parked near a shiny house", [car])
    assert objs[0] is car and [o.name for o in objs] == ["car", "house"]
    both = ObjectInfo("pair", "circle square", ("circle", "square"), declared=True)
    assert prompt_objects("a red circle and a blue square", [both]) == (both,)


def test_a_declared_object_replaces_only_the_phrases_it_names():
    """Sharing an adjective is not naming: the star stays an object beside the declared
    triangle, and each is the other's other (session 20: `keep_others(a)` kept nothing)."""
    a = ObjectInfo("a", "big orange triangle", ("big", "orange", "triangle"), declared=True)
    objs = prompt_objects("a big orange triangle and a big green star", [a])
    assert [o.name for o in objs] == ["a", "star"]
    assert [o.name for o in others(objs, a)] == ["star"]
    assert [o.name for o in others(objs, objs[1])] == ["a"]
    teddy = ObjectInfo("toy", "teddy", ("teddy",), declared=True)
    assert prompt_objects("a teddy bear on a big table", [teddy])[0] is teddy
    big = ObjectInfo("big", "big", ("big",), declared=False)
    assert others(prompt_objects("a big orange triangle and a big green star"), big) == ()


def test_others_drops_the_objects_it_names():
    objs = prompt_objects("a red circle and a blue square and a green triangle")
    circle = ObjectInfo("circle", "circle", ("circle",), declared=False)
    assert [o.name for o in others(objs, circle)] == ["square", "triangle"]
    red = ObjectInfo("red", "red", ("red",), declared=False)
    assert [o.name for o in others(objs, red)] == ["square", "triangle"]


@pytest.mark.parametrize("name, candidates, expected", [
    ("dgo", ["dog", "cat"], "dog"),           # one swap
    ("centorid", ["centroid", "center"], "centroid"),
    ("sead", ["seed", "steps"], "seed"),
    ("Dog", ["Dot", "dog"], "dog"),          # a case-only difference wins ties
    ("xyz", ["dog", "cat"], None),            # too far
    ("ab", ["cd"], None),                      # bound is len/2 = 1
    ("dog", ["dog"], None),                    # itself is not a suggestion
])
def test_did_you_mean(name, candidates, expected):
    assert did_you_mean(name, candidates) == expected


def test_did_you_mean_bound_is_at_most_five():
    long = "a" * 20
    assert did_you_mean(long, ["a" * 15]) == "a" * 15
    assert did_you_mean(long, ["a" * 14]) is None


@given(st.text("abcd", max_size=6), st.lists(st.text("abcd", max_size=6), max_size=6))
def test_did_you_mean_is_order_independent_and_bounded(name, candidates):
    first = did_you_mean(name, candidates)
    assert first == did_you_mean(name, list(reversed(candidates)))
    if first is not None:
        assert first in candidates and edit_distance(name, first) <= min(len(name) / 2, 5)


def test_edit_distance_counts_a_swap_as_one():
    assert edit_distance("dgo", "dog") == 1
    assert edit_distance("kitten", "sitting") == 3
