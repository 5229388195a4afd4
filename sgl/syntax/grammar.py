"""Loading the Lark parser for grammar/sgl.lark, once, and the post-lexer that shapes newlines.

Kept apart from `parse` and `errors` so that both can use the same parser without importing
each other. Lark objects (Tree, Token, exceptions) never leave `sgl.syntax`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Iterator

from lark import Lark, Token

from sgl.resources import grammar_path

START_SYMBOLS = ["start", "expr"]
MAX_DEPTH = 100  # brackets nested deeper than this are refused before the recursive tree walk


class Layout:
    """Post-lexer: newlines are statement separators except inside ( ) and [ ].

    It also merges a run of separators (`;` and newlines, comments between them) into one
    `_NL`, and drops a separator at the start of the input or right after `{`, so that the
    grammar needs no optional-separator rules (which would be LALR conflicts).
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        previous: str | None = None
        for token in stream:
            kind = token.type
            if kind in ("LPAR", "LSQB"):
                depth += 1
                if depth > MAX_DEPTH:
                    raise TooDeep(token)
            elif kind in ("RPAR", "RSQB"):
                depth = max(depth - 1, 0)
            elif kind == "_NL":
                if depth > 0 or previous in (None, "_NL", "LBRACE"):
                    continue
            previous = kind
            yield token


class TooDeep(Exception):
    """Raised by the post-lexer for absurdly nested brackets; turned into a diagnostic."""

    def __init__(self, token: Token):
        super().__init__("nested too deeply")
        self.token = token


class CommentSink:
    """Lexer callback target for comments: the parser is shared, so comments go to whichever
    list the current parse installed."""

    def __init__(self) -> None:
        self.comments: list[Token] | None = None

    def __call__(self, token: Token) -> None:
        if self.comments is not None:
            self.comments.append(token)


COMMENTS = CommentSink()


def _cache_file(grammar_text: str) -> str | bool:
    """A per-user cache file for the parse tables (Lark verifies its hash on load)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "sgl"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    if not os.access(folder, os.W_OK):
        return False
    digest = hashlib.sha256(grammar_text.encode("utf-8")).hexdigest()[:16]
    return str(folder / f"grammar-{digest}.lark-cache")


def build(strict: bool = False, cache: bool = True) -> Lark:
    text = grammar_path().read_text(encoding="utf-8")
    return Lark(
        text,
        parser="lalr",
        lexer="contextual",
        start=START_SYMBOLS,
        propagate_positions=True,
        maybe_placeholders=False,
        postlex=Layout(),
        lexer_callbacks={"COMMENT": COMMENTS},
        cache=_cache_file(text) if cache and not strict else False,
        strict=strict,
    )


@functools.lru_cache(maxsize=1)
def parser() -> Lark:
    """The shared parser (built or loaded from the cache on first use)."""
    return build()


# How the terminals of the grammar are spelled in messages.
TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "RESOLUTION": "a resolution like `512x768`",
    "DISTANCE": "`l1` or `l2`",
    "_NL": "a new line",
    "_ARROW": "`->`",
    "$END": "end of file",
}


@functools.lru_cache(maxsize=None)
def terminal_spelling(name: str) -> str:
    """`)` for RPAR, `weight` for WEIGHT, "a name" for NAME."""
    if name in TERMINAL_WORDS:
        return TERMINAL_WORDS[name]
    try:
        pattern = parser().get_terminal(name).pattern
    except (KeyError, AttributeError):
        return f"`{name.lower()}`"
    if pattern.type == "str":
        return f"`{pattern.value}`"
    return f"`{name.lower()}`"
