"""Prompt words → token columns (BOS offset, sub-tokens, phrases, limits, errors)."""

import pytest

from sgl.diagnostics import SGLError, Span
from sgl.runtime.tokens import find_phrase, pipeline_token_columns, token_columns, word_tokenizer


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer(["a", "photo", "of", "dog", "and", "red", "car"], max_length=16)


def test_whole_word_columns_are_offset_by_bos(tok):
    prompt = "a photo of a dog"
    assert token_columns(tok, prompt, "dog") == [5]
    assert token_columns(tok, prompt, "photo") == [2]


def test_case_insensitive_and_first_occurrence(tok):
    assert token_columns(tok, "A Dog and a dog", "DOG") == [2]


def test_phrase_gives_columns_of_every_word(tok):
    assert token_columns(tok, "a photo of a red car", "red car") == [5, 6]


def test_word_split_into_sub_tokens_covers_all_of_them(tok):
    # "zebra" is not in the vocabulary: one token per character
    assert token_columns(tok, "a zebra and a dog", "zebra") == [2, 3, 4, 5, 6]
    assert token_columns(tok, "a zebra and a dog", "dog") == [9]


def test_not_whole_word_is_e201_with_span(tok):
    span = Span("p.sgl", 3, 1, 3, 4)
    with pytest.raises(SGLError) as err:
        token_columns(tok, "a photo of a dog", "do", span=span)
    assert err.value.diagnostics[0].code == "E201"
    assert err.value.diagnostics[0].span == span


def test_past_the_length_limit_is_e202(tok):
    prompt = "a " * 14 + "dog"
    with pytest.raises(SGLError) as err:
        token_columns(tok, prompt, "dog")
    assert err.value.diagnostics[0].code == "E202"
    # the last column kept before EOS still works
    assert token_columns(tok, "a " * 13 + "dog", "dog") == [14]


def test_find_phrase_matches_across_punctuation():
    assert find_phrase("a t-shirt, red", "t-shirt") == (2, 9)
    assert find_phrase("a cart", "car") is None


def test_sdxl_two_tokenizers_agree(tiny_sdxl):
    assert pipeline_token_columns(tiny_sdxl, "a photo of a dog", "dog") == [5]


def test_a_later_occurrence_has_its_own_columns(tok):
    assert token_columns(tok, "a red dog and a red car", "red", occurrence=1) == [6]
    assert find_phrase("a red dog and a red car", "red", 2) is None


def test_every_word_occurrence_is_recorded_under_its_own_key():
    from sgl.runtime.tokens import Nth, word_keys

    keys = word_keys("a big red circle and a big blue square")
    assert keys[("big",)] == Nth("big", 0) and keys[("big", 1)] == Nth("big", 1)
    assert keys[("a", 1)] == Nth("a", 1) and ("big", 2) not in keys


@pytest.mark.parametrize("prompt, words, expected", [
    # the words run together: that place (the second object reads the second "big")
    ("a big orange triangle and a big green star", ("big", "green", "star"), (("big", 1), ("green",), ("star",))),
    ("a big orange triangle and a big green star", ("big", "orange", "triangle"), (("big",), ("orange",), ("triangle",))),
    # they do not (a reference names more words): the noun, and each other word nearest before it
    ("a big yellow triangle and a big red star", ("big", "star"), (("big", 1), ("star",))),
    ("a big yellow triangle and a big red star", ("big", "triangle"), (("big",), ("triangle",))),
    ("a star and a big circle", ("big", "star"), (("big",), ("star",))),  # none before: the nearest after
    ("a dog and a dog", ("dog",), (("dog",),)),
    ("a big dog", ("small", "dog"), None),
])
def test_an_object_reads_the_occurrences_of_its_own_phrase(prompt, words, expected):
    from sgl.runtime.tokens import occurrence_keys

    assert occurrence_keys(prompt, words) == expected


def test_a_phrase_map_is_the_mean_of_its_own_occurrences():
    """The star of "a big orange triangle and a big green star" reads the second "big", not the
    triangle's (before session 20 every word read its first occurrence)."""
    import torch

    from sgl.runtime.execute import with_phrases, word_requests
    from sgl.runtime.hooks import Recorded
    from sgl.runtime.tokens import Nth

    prompt = "a big orange triangle and a big green star"
    star = ("big", "green", "star")
    requests = word_requests([star], prompt)
    assert requests == {("big", 1): Nth("big", 1), ("green",): Nth("green"), ("star",): Nth("star")}
    maps = {("big",): torch.full((1, 2, 2), 9.0), ("big", 1): torch.ones(1, 2, 2),
            ("green",): torch.full((1, 2, 2), 2.0), ("star",): torch.full((1, 2, 2), 3.0)}
    built = with_phrases(Recorded(maps, {}), [star], prompt).attn[star]
    assert torch.allclose(built, torch.full((1, 2, 2), 2.0))
    assert word_requests([("cat",)], prompt) == {("cat",): "cat"}  # missing: the sampler says E201
