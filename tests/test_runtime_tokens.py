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
