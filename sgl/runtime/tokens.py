"""Prompt words → token columns of the text encoder's output.

Self-guidance reads the cross-attention column of an object's word, so every word (or phrase)
a program names must be placed on the tokenizer's sequence exactly as the pipeline encodes the
prompt: BOS first, a word split into sub-tokens covers several columns, anything past the
tokenizer's maximum length is cut off by the pipeline and therefore cannot be guided.

Also builds small offline CLIP tokenizers from a word list (tests and the embedded `shapes`
model need one without a model hub).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

from sgl.diagnostics import SGLError, Span

WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)


def prompt_words(text: str) -> list[tuple[str, int, int]]:
    """The words of a text as (lowercased word, start, end) character spans."""
    return [(m.group(0).lower(), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def find_phrase(prompt: str, phrase: str, occurrence: int = 0) -> tuple[int, int] | None:
    """Character span (start, end) of the `occurrence`-th (from 0) whole-word, case-insensitive
    occurrence of `phrase` (one or more words) in `prompt`, or None."""
    words = prompt_words(prompt)
    wanted = [w for w, _, _ in prompt_words(phrase)]
    if not wanted:
        return None
    seen = 0
    for i in range(len(words) - len(wanted) + 1):
        if [w for w, _, _ in words[i:i + len(wanted)]] == wanted:
            if seen == occurrence:
                return words[i][1], words[i + len(wanted) - 1][2]
            seen += 1
    return None


@dataclass(frozen=True)
class Nth:
    """A token request for the `n`-th (from 0) occurrence of a word in the run's prompt: a word
    the prompt uses twice ("a big orange triangle and a big green star") is recorded once per
    place, so that each object reads its own."""

    word: str
    n: int = 0


def word_key(word: str, n: int) -> tuple:
    """The recording key of a word's `n`-th occurrence: `(word,)` for the first (which is also
    the key of a one-word object), `(word, n)` for a later one."""
    return (word,) if n == 0 else (word, n)


def _placed(prompt: str) -> list[tuple[str, int]]:
    """(word, which occurrence of it this is, from 0) for every word of `prompt`, in order."""
    seen: dict[str, int] = {}
    out = []
    for w, _, _ in prompt_words(prompt):
        seen[w] = seen.get(w, -1) + 1
        out.append((w, seen[w]))
    return out


def word_keys(prompt: str) -> dict[tuple, Nth]:
    """Recording keys and requests for every word occurrence of `prompt` (what a cached run
    records, so that it serves any object of any later program)."""
    return {word_key(w, n): Nth(w, n) for w, n in _placed(prompt)}


@functools.lru_cache(maxsize=4096)
def occurrence_keys(prompt: str, words: tuple[str, ...]) -> tuple[tuple, ...] | None:
    """The recording keys (`word_key`) of the word occurrences an object of `words` reads in
    `prompt`: the first place where the words run together; otherwise (an object named with
    fewer or other words than the prompt uses, "big triangle" in a reference's "a big yellow
    triangle and a big red star") the first occurrence of its last word (its noun) and, for
    each other word, its nearest occurrence before that one (after it when there is none
    before). None when a word is not in the prompt. Until session 20 every word read its first
    occurrence, so the star of "a big orange triangle and a big green star" read the
    triangle's "big"."""
    occurrences = _placed(prompt)
    placed = [word_key(w, n) for w, n in occurrences]
    said = [w for w, _ in occurrences]
    wanted = [w.lower() for w in words]
    if not wanted or any(w not in said for w in wanted):
        return None
    k = len(wanted)
    for i in range(len(said) - k + 1):
        if said[i:i + k] == wanted:
            return tuple(placed[j] for j in range(i, i + k))
    head = said.index(wanted[-1])
    places = []
    for w in wanted[:-1]:
        at = [j for j, v in enumerate(said) if v == w]
        before = [j for j in at if j < head]
        places.append(before[-1] if before else at[0])
    places.append(head)
    return tuple(placed[j] for j in places)


def _token_spans(tokenizer, prompt: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of the prompt with special tokens (no padding, no truncation) and the character
    span of each token (specials get an empty span)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(prompt, add_special_tokens=True, truncation=False, return_offsets_mapping=True,
                        verbose=False)
        ids = list(enc["input_ids"])
        spans = [tuple(o) for o in enc["offset_mapping"]]
        return ids, spans
    return _token_spans_by_word(tokenizer, prompt)


def _token_spans_by_word(tokenizer, prompt: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Fallback for tokenizers without offsets: BPE tokenizers of CLIP split on words first, so
    encoding word by word gives the same sequence."""
    ids, spans = [], []
    if tokenizer.bos_token_id is not None:
        ids.append(tokenizer.bos_token_id)
        spans.append((0, 0))
    for m in re.finditer(r"\S+", prompt):
        piece_ids = tokenizer(m.group(0), add_special_tokens=False)["input_ids"]
        ids.extend(piece_ids)
        spans.extend([(m.start(), m.end())] * len(piece_ids))
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        spans.append((len(prompt), len(prompt)))
    return ids, spans


def _max_columns(tokenizer) -> int:
    return int(getattr(tokenizer, "model_max_length", 77) or 77)


def token_columns(tokenizer, prompt: str, phrase: str, *, span: Span | None = None, occurrence: int = 0) -> list[int]:
    """Column indices (positions in the encoded, padded prompt) of every token of `phrase` (its
    `occurrence`-th place in the prompt, from 0).

    Raises SGLError E201 when the phrase is not a sequence of whole words of the prompt, E202
    when it lies past the tokenizer's length limit, E203 when the tokenizer cannot represent it."""
    where = find_phrase(prompt, phrase, occurrence)
    if where is None:
        raise SGLError.single(
            "E201", f"`{phrase}` is not a word of the prompt", span,
            hint="objects must be whole words (or phrases) of the prompt they are read from",
            notes=(f"the prompt is {prompt!r}",))
    start, end = where
    ids, spans = _token_spans(tokenizer, prompt)
    columns = [i for i, (a, b) in enumerate(spans) if b > a and a < end and b > start]
    if not columns:
        raise SGLError.single("E203", f"the tokenizer gives no token for `{phrase}`", span)
    limit = _max_columns(tokenizer) - 1  # the pipeline keeps BOS + (limit - 1) tokens + EOS
    if max(columns) >= limit:
        raise SGLError.single(
            "E202", f"`{phrase}` is cut off: it lies past the text encoder's {limit + 1}-token limit", span,
            hint="shorten the prompt or move the object's words towards its beginning")
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk != tokenizer.eos_token_id and any(ids[c] == unk for c in columns):
        raise SGLError.single("E203", f"the tokenizer cannot represent `{phrase}`", span)
    return columns


def pipeline_token_columns(pipe, prompt: str, phrase: str, *, span: Span | None = None, occurrence: int = 0) -> list[int]:
    """`token_columns` for a pipeline; with two tokenizers (SDXL) both must agree, because their
    embeddings are concatenated position by position."""
    columns = token_columns(pipe.tokenizer, prompt, phrase, span=span, occurrence=occurrence)
    second = getattr(pipe, "tokenizer_2", None)
    if second is not None and token_columns(second, prompt, phrase, span=span, occurrence=occurrence) != columns:
        raise SGLError.single("E203", f"the two tokenizers place `{phrase}` at different columns", span)
    return columns


# ---------------------------------------------------------------------------------------------
# Offline tokenizers


def _word_merges(word: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Left-to-right BPE merges that build `word</w>` from its characters, and the new tokens."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    merges, tokens = [], []
    prefix = pieces[0]
    for piece in pieces[1:]:
        merges.append((prefix, piece))
        prefix = prefix + piece
        tokens.append(prefix)
    return merges, tokens


def word_tokenizer(words: Sequence[str], max_length: int = 77):
    """A CLIP tokenizer built in memory: each word of `words` is one token; any other lowercase
    word falls back to one token per character (so sub-token words exist too)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for special in ("<|startoftext|>", "<|endoftext|>", "!"):
        add(special)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789,.'-":
        add(ch)
        add(ch + "</w>")
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        if len(word) < 2:
            continue
        word_merges, tokens = _word_merges(word)
        for m in word_merges:
            if m not in merges:
                merges.append(m)
        for t in tokens:
            add(t)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
