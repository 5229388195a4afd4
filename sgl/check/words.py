"""The words of a prompt and the objects it names.

Shared rules: the checker uses them to resolve bare names (`dog` is an Object when it is a word
of the prompt), the lowering uses them to expand `objects()` and `others(o)` at compile time.

- Words: lower-cased runs of letters.
- Noun phrases: maximal runs of content words between stop words. "a red circle and a blue
  square" → ("red", "circle"), ("blue", "square").
- Each phrase is one object, named by its last word. A declared `object` replaces every phrase
  it shares a word with.
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
        owner = next((d for d in declared if set(d.words) & set(phrase)), None)
        if owner is None:
            out.append(ObjectInfo(phrase[-1], " ".join(phrase), phrase, declared=False))
        elif owner.name not in placed:
            placed.add(owner.name)
            out.append(owner)
    return tuple(out)


def others(objects: Iterable[ObjectInfo], o: ObjectInfo) -> tuple[ObjectInfo, ...]:
    """`others(o)`: the objects that share no word with `o`."""
    mine = set(o.words)
    return tuple(obj for obj in objects if not (set(obj.words) & mine))
