"""Syntax diagnostics (codes E001–E009): what was expected, where, and how to fix it.

A failed parse is explained in three steps: Lark's exception gives the position and the
terminals the parser would have accepted; `match_examples` against `MISTAKES` (malformed
snippets) recognises common mistakes and gives them a code and a hint; and the text is cut
into top-level statements so that one error per statement is reported, not just the first.

Codes:
  E001 unexpected token            E002 unexpected end of file     E003 unexpected character
  E004 bad string (unterminated, unknown escape)                   E005 unclosed bracket
  E006 `==` instead of `=`         E007 window without `%`         E008 definition without body/value
  E009 misplaced or repeated modifier
"""

from __future__ import annotations

import functools
import re

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from sgl.diagnostics import Diagnostic, Label, Span
from sgl.syntax.grammar import TooDeep, parser, terminal_spelling
from sgl.syntax.settings import EXAMPLES, SETTINGS

CONTINUATIONS = {"STAR", "PLUS", "MINUS", "SLASH", "DOT"}
EXPRESSION_STARTS = {"NAME", "NUMBER", "STRING", "LPAR", "LSQB", "MINUS"}
MODIFIER_WORDS = ("weight", "from", "using", "margin")
# Tokens that suggest the bracket before them should have been closed.
AFTER_CLOSE = {"=", "<", ">", "<=", ">=", "≤", "≥", "{", "weight", "from", "using", "margin"}
BUG_REPORT = "this is a bug in SGL; please report it with the program that triggered it"

# Common mistakes: (code, message or None for the generic one, hint) → malformed snippets that
# end in the same parser state as the mistake. The first matching entry wins.
MISTAKES: list[tuple[tuple[str, str | None, str], list[str]]] = [
    (("E006", "`==` is not an SGL operator", "a constraint uses a single `=`: `size(dog) = 0.3`"),
     ["size(dog) == 1", "a = b == c", "x == 1", "keep(dog) == 1"]),
    (("E007", "a window needs `%` after each bound", "write the window as `from 10% to 60%`"),
     ["keep(dog) from 10 to 50%", "keep(dog) from 10% to 50", "a = b from 10 to 50%",
      "a = b from 10% to 50", "a < b from 1 to 2%", "a < b from 1% to 2",
      "minimize a from 1 to 2%", "minimize a from 1% to 2", "keep(dog) from 10", "a = b from 10"]),
    (("E008", "`fn` definition has no body",
      "give it a body: `fn f(o: Object) -> Scalar = expr` or `fn f(o: Object) { … }`"),
     ["fn f(o: Object)\n", "fn f(o: Object) -> Scalar\n", "fn f()\n", "fn f(o: Object)", "fn f()",
      "fn f(o: Object) -> Scalar"]),
    (("E001", None, "a parameter needs a type: `fn f(o: Object)`"),
     ["fn f(o)", "fn f(o, p: Object)", "fn f(a: Scalar, o)"]),
    (("E008", "`let` needs `=` and a value", "write `let name = expr`"),
     ["let x 1", "let x\n", "let x", "let x =", "let = 1"]),
    (("E008", "`object` needs `=` and a phrase of the prompt", 'write `object car = "red car"`'),
     ['object car "red car"', "object car\n", "object car", "object car = car"]),
    (("E008", "`image` needs `generate` or `load`",
      'write `image ref = generate "a prompt"` or `image photo = load "x.png" caption "…"`'),
     ['image r = "a dog"', "image r = r", 'image r "a dog"']),
    (("E008", "`load` needs a caption", 'write `image photo = load "x.png" caption "a wooden house"`'),
     ['image r = load "x.png"\n', 'image r = load "x.png"', 'image r = load "x.png" "a house"']),
    (("E001", None, "the distance is `l1` or `l2`: `using l2`"),
     ["a = b using L2", "a = b using l3", "a = b using", "keep(o) using x"]),
    (("E001", None, "the body of `for` goes in braces: `for o in others(dog) { keep(o) }`"),
     ["for o in others(dog) keep(o)", "for o in others(dog)\n", "for o in x keep(o)"]),
    (("E001", None, "`for` needs `in`: `for o in others(dog) { … }`"),
     ["for o others(dog) { keep(o) }", "for o = others(dog) { keep(o) }"]),
]


def syntax_diagnostics(text: str, file: str, start: str = "start") -> list[Diagnostic]:
    """Every syntax error of `text`: the first one exactly, then one per later statement."""
    first = _first_error(text, file, start)
    if first is None or start != "start":
        return [first] if first is not None else [internal(file, text, RuntimeError("parse failed twice"))]
    found = [first]
    offset = first.span.start if first.span else 0
    for chunk_start, chunk_end in statement_chunks(text):
        if chunk_end <= offset or chunk_start <= offset < chunk_end:
            continue
        blanked = _blank_outside(text, chunk_start, chunk_end)
        diag = _first_error(blanked, file, start, original=text)
        if diag is not None:
            found.append(diag)
    return found


def _first_error(text: str, file: str, start: str, original: str | None = None) -> Diagnostic | None:
    try:
        parser().parse(text, start=start)
    except TooDeep as exc:
        return too_deep(file, original or text, exc.token.start_pos)
    except UnexpectedInput as exc:
        return explain(exc, original or text, file, start)
    return None


def explain(exc: UnexpectedInput, text: str, file: str, start: str = "start") -> Diagnostic:
    """One Lark exception → one diagnostic."""
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(exc, text, file)
    token = getattr(exc, "token", None)
    at_end = isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END" or (
        token.type == "_NL" and not text[token.start_pos:].strip())
    expected = sorted(getattr(exc, "accepts", None) or getattr(exc, "expected", None) or ())
    position = len(text) if at_end else token.start_pos
    if at_end:
        span = Span.at_offsets(file, text, len(text), len(text))
        found = "end of file"
    elif token.type == "_NL":
        line_start = text.rfind("\n", 0, token.start_pos) + 1
        code_end = line_start + len(_without_comments(text[line_start:token.start_pos]).rstrip())
        where = code_end if token.value != ";" else token.start_pos
        span = Span.at_offsets(file, text, where, where)
        found = "end of line" if token.value != ";" else "`;`"
    else:
        span = Span.at_offsets(file, text, token.start_pos, token.end_pos)
        found = f"`{token.value}`"
    wanted = _spell_expected(expected)
    generic = f"expected {wanted}, found {found}" if wanted else f"unexpected {found}"

    unclosed = _unclosed_bracket(text, position)
    statement = _without_comments(_statement_text(text, len(text.rstrip()) if at_end else position))
    first_word = statement.split(maxsplit=1)[0] if statement.split() else ""
    notes: tuple[str, ...] = ()
    labels: tuple[Label, ...] = ()

    code, message, hint = ("E002" if at_end else "E001"), generic, None
    mistake = _match_mistake(exc, start) if isinstance(exc, UnexpectedToken) else None
    if mistake is not None:
        code, special, hint = mistake
        message = special or generic
    elif first_word in MODIFIER_WORDS and not statement.startswith(first_word + "("):
        code, message = "E009", f"`{first_word}` must follow a constraint"
        hint = "write modifiers after the constraint: `keep(dog) weight 2 from 0% to 50%`"
    elif at_end and unclosed is not None and unclosed[0] == "{":
        code, message = "E005", "unclosed `{`"
        hint = "add `}` to close the block"
        labels = (Label(Span.at_offsets(file, text, unclosed[1], unclosed[1] + 1), "unclosed delimiter"),)
    elif unclosed is not None and unclosed[0] != "{" and ("RPAR" in expected or "RSQB" in expected) and (
            at_end or token.type in ("_NL", "RBRACE", "RPAR", "RSQB") or token.value in AFTER_CLOSE
            or text.count("\n", unclosed[1], position) > 0):
        bracket, where = unclosed
        closer = ")" if bracket == "(" else "]"
        code, message = "E005", f"unclosed `{bracket}`"
        hint = f"add `{closer}` to close the `{bracket}`"
        labels = (Label(Span.at_offsets(file, text, where, where + 1), "unclosed delimiter"),)
        notes = (generic,)
    elif first_word in SETTINGS and not any(op in statement for op in "=<>≤≥"):
        whole = _without_comments(_statement_text(text, len(text.rstrip()) if at_end else position, whole=True))
        bare = whole.strip() == first_word
        code = "E008"
        message = f"the setting `{first_word}` has no value" if bare else \
            f"the value of `{first_word}` must be a single literal"
        hint = f"write `{EXAMPLES[first_word]}`"
    elif not at_end and token.type in ("RPAR", "RSQB", "RBRACE"):
        message = f"unexpected `{token.value}`: nothing to close"
        hint = "remove it, or add the opening bracket it belongs to"
    if at_end and code == "E001":
        code = "E002"
    return Diagnostic(code, message, span, hint=hint, notes=notes, labels=labels)


def _bad_character(exc: UnexpectedCharacters, text: str, file: str) -> Diagnostic:
    pos = exc.pos_in_stream
    char = text[pos] if pos < len(text) else ""
    if char == '"':
        line_end = text.find("\n", pos)
        line_end = len(text) if line_end == -1 else line_end
        span = Span.at_offsets(file, text, pos, line_end)
        return Diagnostic("E004", "unterminated string", span,
                          hint='close the string with `"` on the same line')
    span = Span.at_offsets(file, text, pos, pos + 1)
    shown = char if char.isprintable() and not char.isspace() else repr(char)[1:-1]
    hint = None
    if char in "!&|":
        hint = "SGL has no logical operators; write one constraint per line"
    elif char == "{":
        hint = "a `{ … }` block belongs to `fn` or `for`"
    return Diagnostic("E003", f"unexpected character `{shown}`", span, hint=hint)


def _spell_expected(expected: list[str]) -> str:
    names = set(expected)
    words: list[str] = []
    if EXPRESSION_STARTS <= names:
        names -= EXPRESSION_STARTS
        words.append("an expression")
    elif names - CONTINUATIONS - EXPRESSION_STARTS:
        names -= CONTINUATIONS  # after a complete expression, operators are noise
    words += sorted({terminal_spelling(n) for n in names}, key=_spelling_order)
    if len(words) > 6:
        return "one of " + ", ".join(words[:6]) + ", …"
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return "one of " + ", ".join(words[:-1]) + " or " + words[-1]


def _spelling_order(word: str) -> tuple:
    return (not word.startswith("`"), word)


def _match_mistake(exc: UnexpectedToken, start: str):
    """The `MISTAKES` entry whose snippet fails in the same parser state on the same kind of
    token. (Lark's own `match_examples` also compares stack depths, so a snippet would only
    match as the first statement of a file.)"""
    state = getattr(exc, "state", None)
    position = getattr(state, "position", state)
    return _mistake_table(start).get((position, exc.token.type))


@functools.lru_cache(maxsize=None)
def _mistake_table(start: str) -> dict:
    table: dict = {}
    for entry, snippets in MISTAKES:
        for snippet in [*snippets, *(s + "\n" for s in snippets)]:
            try:
                parser().parse(snippet, start=start)
            except UnexpectedToken as exc:
                position = getattr(exc.state, "position", exc.state)
                table.setdefault((position, exc.token.type), entry)
            except (UnexpectedInput, TooDeep):
                pass
    return table


def _unclosed_bracket(text: str, position: int) -> tuple[str, int] | None:
    """The innermost bracket still open at `position` (strings and comments skipped)."""
    stack: list[tuple[str, int]] = []
    for kind, where in _brackets(text[:position]):
        if kind in "([{":
            stack.append((kind, where))
        elif kind in ")]}" and stack:
            stack.pop()
    return stack[-1] if stack else None


def _brackets(text: str):
    """(char, offset) of every bracket outside strings and comments."""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
            continue
        if char == '"':
            match = re.compile(r'"([^"\\\n]|\\[^\n])*"?').match(text, i)
            i = match.end()
            continue
        if char in "()[]{};\n":
            yield char, i
        i += 1


def _without_comments(code: str) -> str:
    return re.sub(r'("(?:[^"\\\n]|\\.)*"?)|#[^\n]*', lambda m: m.group(1) or "", code)


def _statement_text(text: str, position: int, whole: bool = False) -> str:
    """The text of the statement holding `position`, from its start to `position` (or to
    its end when `whole`)."""
    for start, end in statement_chunks(text):
        if start <= position <= end:
            return text[start:end] if whole or position <= start else text[start:position]
    return ""


def statement_chunks(text: str) -> list[tuple[int, int]]:
    """(start, end) of every top-level statement, found without the parser so that it works
    on broken text: separators at bracket depth 0, and a line starting in column 1 (not with
    a closing bracket) also starts a new statement, which bounds an unclosed bracket."""
    chunks: list[tuple[int, int]] = []
    depth = 0
    start = 0
    for char, where in _brackets(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        elif char == ";" and depth == 0:
            chunks.append((start, where))
            start = where + 1
        elif char == "\n":
            next_char = text[where + 1: where + 2]
            new_statement = depth == 0 or (next_char not in ("", " ", "\t", "\n", "\r", "#")
                                           and next_char not in ")]}")
            if new_statement:
                chunks.append((start, where))
                start = where + 1
                depth = 0
    chunks.append((start, len(text)))
    return [(s, e) for s, e in chunks if _has_code(text[s:e])]


def _has_code(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("#") for line in chunk.splitlines())


def _blank_outside(text: str, start: int, end: int) -> str:
    """`text` with everything outside [start, end) blanked, newlines kept (offsets unchanged)."""
    def blank(part: str) -> str:
        return re.sub(r"[^\n]", " ", part)
    return blank(text[:start]) + text[start:end] + blank(text[end:])


# ----------------------------------------------------------------------------- diagnostics built by the parser

def duplicate_modifier(word: str, span: Span | None, first: Span | None) -> Diagnostic:
    labels = (Label(first, "first given here"),) if first is not None else ()
    return Diagnostic("E009", f"`{word}` is given twice", span, hint="remove one of them",
                      labels=labels, notes=("each modifier may appear at most once per constraint",))


def two_sources(func: str, suffix_span: Span, bracket_span: Span | None) -> Diagnostic:
    labels = (Label(bracket_span, "second source"),) if bracket_span is not None else ()
    return Diagnostic("E001", f"`{func}` is given two sources", suffix_span,
                      hint=f"keep one: `{func}₀(…)` reads the original run, `{func}[ref](…)` the image `ref`",
                      labels=labels)


def bad_escape(escape: str, span: Span) -> Diagnostic:
    return Diagnostic("E004", f"unknown escape `{escape}` in string", span,
                      hint='the escapes are `\\"`, `\\\\` and `\\n`')


def too_deep(file: str, text: str, offset: int = 0) -> Diagnostic:
    return Diagnostic("E001", "expression nested too deeply", Span.at_offsets(file, text, offset, offset),
                      hint="split it into parts with `let`",
                      notes=("SGL reads at most 100 nested brackets, and chains of a few hundred operators",))


def internal(file: str, text: str, exc: BaseException) -> Diagnostic:
    return Diagnostic("E999", f"internal compiler error: {type(exc).__name__} while parsing",
                      Span.at_offsets(file, text, 0, 0), notes=(BUG_REPORT,))


# ----------------------------------------------------------------------------- long explanations (`sgl explain E006`)

EXPLANATIONS = {
    "E001": """A token appeared where the grammar does not allow it.

The message says what the parser expected instead. For example, a parameter without a type:

    fn grow(o) = size(o) * 1.5          # error: expected `:`

Every parameter is written with its type:

    fn grow(o: Object) = size(o) * 1.5
""",
    "E002": """The file ended in the middle of a statement.

    size(circle) =                      # error: expected an expression, found end of file

Finish the statement, or delete it:

    size(circle) = 0.3
""",
    "E003": """A character that SGL does not use, outside a string or a comment.

    size(circle) > 0.2 && size(square) < 0.1    # error: unexpected character `&`

SGL has no logical operators: all constraints of a program hold together, so write one per line:

    size(circle) > 0.2
    size(square) < 0.1
""",
    "E004": """A string that is not closed on its line, or that uses an unknown escape.

    prompt "a red circle                # error: unterminated string
    prompt "a red\\tcircle"              # error: unknown escape `\\t`

Strings end on the line they start on; the escapes are `\\"`, `\\\\` and `\\n`:

    prompt "a red circle"
""",
    "E005": """A bracket was opened and never closed.

    size(circle = 0.4                   # error: unclosed `(`

Newlines inside `( )` and `[ ]` are ignored, so an unclosed bracket would swallow the following
lines; SGL reports it where the statement should have ended. Close the bracket:

    size(circle) = 0.4
""",
    "E006": """`==` is not an SGL operator.

    size(circle) == size₀(circle)       # error

A constraint states what should be true with a single `=` (an equality, minimised as a
distance), or with `<`, `>`, `<=`, `>=` (inequalities):

    size(circle) = size₀(circle)
""",
    "E007": """A window's bounds are percentages of the sampling steps and need `%`.

    keep(square) from 10 to 60%         # error

Write every bound with `%`:

    keep(square) from 10% to 60%

A window that runs to the last step may leave out its end: `from 10%` is `from 10% to 100%`.
""",
    "E008": """A definition or setting is missing a part: a `fn` without a body, a `let` or `object`
without `=`, an `image` without `generate`/`load`, a setting without its value.

    fn bigger(o: Object) -> Scalar      # error: no body
    seed                                # error: no value

Give the missing part:

    fn bigger(o: Object) -> Scalar = size(o) * 2
    seed 7
""",
    "E009": """A modifier (`weight`, `from … to …`, `using`, `margin`) is misplaced or repeated.

    weight 2 keep(square)               # error: modifiers follow the constraint
    size(circle) = 0.3 weight 2 weight 3     # error: `weight` given twice

Write each modifier once, after the constraint it changes, in any order:

    keep(square) weight 2
    size(circle) = 0.3 weight 3 from 0% to 50%
""",
}
