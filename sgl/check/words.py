"""The words of a prompt and the objects it names.

Shared rules: the checker uses them to resolve bare names (`dog` is an Object when it is a word
of the prompt), the lowering uses them to expand `objects()` and `others(o)` at compile time.

- Words: lower-cased runs of letters.
- Noun phrases: maximal runs of content words between stop words. "a red circle and a blue
  square" → ("red", "circle"), ("blue", "square").
- Each phrase is one object, named by its last word (its noun). A declared `object` replaces
  every phrase it names (`names`): one whose noun is among its words, or inside which its words
  run. Sharing an adjective is not naming: "big orange triangle" does not replace "big green
  star" (until session 20 it did, which emptied `others(a)` in every prompt whose two objects
  were both big or both small, and `keep_others(a)` kept nothing).
"""

from __future__ import annotations

import re
from typing import Iterable

from sgl.check.program import ObjectInfo

_WORD = re.compile(r"[^\W\d_]+")

STOP_WORDS = frozenset("""
    a an the and or of on in at with to from by for near next under over above below behind
    front beside between into onto inside outside around is are was were be its their his her
    this that these those some very photo picture image background scene left right top bottom
    side there here
""".split())


def words_of(text: str) -> tuple[str, ...]:
    """The lower-cased words of a prompt or phrase, in order."""
    return tuple(w.lower() for w in _WORD.findall(text))


def noun_phrases(text: str) -> tuple[tuple[str, ...], ...]:
    """Maximal runs of content words between stop words, in prompt order."""
    phrases: list[tuple[str, ...]] = []
    run: list[str] = []
    for word in words_of(text):
        if word in STOP_WORDS:
            if run:
                phrases.append(tuple(run))
            run = []
        else:
            run.append(word)
    if run:
        phrases.append(tuple(run))
    return tuple(phrases)


def prompt_objects(prompt: str, declared: Iterable[ObjectInfo] = ()) -> tuple[ObjectInfo, ...]:
    """What `objects()` means for `prompt`: one object per noun phrase, where a declared object
    takes the place of every phrase it overlaps (it appears once, at its first phrase)."""
    declared = [d for d in declared if d.declared]
    out: list[ObjectInfo] = []
    placed: set[str] = set()
    for phrase in noun_phrases(prompt):
        owner = next((d for d in declared if names(d.words, phrase)), None)
        if owner is None:
            out.append(ObjectInfo(phrase[-1], " ".join(phrase), phrase, declared=False))
        elif owner.name not in placed:
            placed.add(owner.name)
            out.append(owner)
    return tuple(out)


def names(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    """Whether an object of `words` is the thing `phrase` names: the phrase's noun (its last
    word) is one of the words ("car" or "red car" for "shiny red car"), or the words run inside
    the phrase ("teddy" in "teddy bear", "red" in "red circle")."""
    if not phrase:
        return False
    n = len(words)
    return phrase[-1] in words or any(phrase[i:i + n] == tuple(words) for i in range(len(phrase) - n + 1))


def others(objects: Iterable[ObjectInfo], o: ObjectInfo) -> tuple[ObjectInfo, ...]:
    """`others(o)`: the objects that are not `o`: neither names the other (`names`), so the
    objects of "a big orange triangle and a big green star" are each other's others."""
    return tuple(obj for obj in objects
                 if obj != o and not names(o.words, obj.words) and not names(obj.words, o.words))
