"""What the REPL's line editor knows about SGL text: tokens for colouring and the names to
complete at the cursor. Plain functions over strings; `sgl/repl.py` wraps them for
prompt_toolkit.
"""

from __future__ import annotations

import functools
import re
from typing import Iterator

from sgl.repl_session import COMMAND_NAMES, Session

KEYWORDS = ("use", "object", "image", "generate", "load", "caption", "let", "fn", "for", "in",
            "minimize", "maximize", "weight", "from", "to", "using", "margin", "l1", "l2")

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*"?)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:x\d+)?%?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*₀?)
  | (?P<space>\s+)
  | (?P<op><=|>=|->|[≤≥=<>+\-*/(),\[\]{}.:;])
  | (?P<other>.)
""", re.VERBOSE)


@functools.cache
def setting_names() -> tuple[str, ...]:
    from sgl.program import DEFAULTS

    return tuple(sorted({"prompt", *DEFAULTS}))


@functools.cache
def type_names() -> tuple[str, ...]:
    from sgl.check.types import BASE_TYPES

    return tuple(sorted({*BASE_TYPES, "List"}))


def tokens(line: str) -> Iterator[tuple[str, str]]:
    """(kind, text) pairs covering `line`: comment, string, number, keyword, setting, type,
    source (`orig` and a `₀`/`_0` suffix), name, op, space, other."""
    for match in _TOKEN.finditer(line):
        kind, text = match.lastgroup, match.group()
        if kind == "name":
            kind = classify(text)
        yield kind, text


def classify(word: str) -> str:
    if word in KEYWORDS:
        return "keyword"
    if word in setting_names():
        return "setting"
    if word in type_names():
        return "type"
    if word == "orig" or word.endswith(("₀", "_0")):
        return "source"
    return "name"


# ---------------------------------------------------------------------- completion

@functools.cache
def stdlib_functions() -> dict[str, tuple[str, ...]]:
    """Function names by stdlib module (`prelude`, `core`, `edits`, …), read from the shipped
    .sgl files with the SGL parser."""
    from sgl.resources import stdlib_dir
    from sgl.syntax import ast
    from sgl.syntax.parse import parse

    out: dict[str, tuple[str, ...]] = {}
    for path in sorted(stdlib_dir().glob("*.sgl")):
        program = parse(path.read_text(encoding="utf-8"), str(path))
        names = [s.name for s in program.statements if isinstance(s, ast.FnDef)]
        out[path.stem] = tuple(dict.fromkeys(names))
    return out


def stdlib_modules() -> tuple[str, ...]:
    """Modules a `use` can name (the prelude and core are always there)."""
    return tuple(m for m in stdlib_functions() if m not in ("prelude", "core"))


def prompt_words(prompt: str) -> list[str]:
    """Lower-cased runs of letters of a prompt, in order, each once."""
    return list(dict.fromkeys(w.lower() for w in re.findall(r"[A-Za-z]+", prompt)))


@functools.lru_cache(maxsize=8)
def program_names(text: str) -> dict[str, tuple[str, ...]]:
    """What `text` (the session so far, which parses) defines: functions, objects, images,
    lets, prompt words (main prompt and image captions); nothing if it does not parse."""
    from sgl.diagnostics import SGLError
    from sgl.syntax import ast
    from sgl.syntax.parse import parse

    found: dict[str, list[str]] = {"functions": [], "objects": [], "images": [], "lets": [],
                                   "words": []}
    try:
        program = parse(text, "<repl>")
    except SGLError:
        return found
    for stmt in program.statements:
        if isinstance(stmt, ast.FnDef):
            found["functions"].append(stmt.name)
        elif isinstance(stmt, ast.ObjectDecl):
            found["objects"].append(stmt.name)
        elif isinstance(stmt, (ast.GenerateImage, ast.LoadImage)):
            found["images"].append(stmt.name)
            if isinstance(stmt, ast.LoadImage):
                found["words"] += prompt_words(stmt.caption.value)
            else:
                found["words"] += prompt_words(stmt.prompt.value)
        elif isinstance(stmt, ast.Let):
            found["lets"].append(stmt.name)
        elif isinstance(stmt, ast.Setting) and stmt.name == "prompt" and hasattr(stmt.value, "value"):
            found["words"] = prompt_words(stmt.value.value) + found["words"]
        elif isinstance(stmt, ast.Use) and not stmt.is_path:
            found["functions"] += stdlib_functions().get(stmt.target, ())
    return {key: tuple(dict.fromkeys(names)) for key, names in found.items()}


_DEFINITION = re.compile(r"""\b(fn|object|image|let)\s+([A-Za-z_]\w*)|\b(prompt|generate|caption)\s+"([^"\n]*)""")
_KIND = {"fn": "functions", "object": "objects", "image": "images", "let": "lets"}


def scan_names(entry: str) -> dict[str, list[str]]:
    """Names an unfinished entry defines so far (it need not parse yet)."""
    found: dict[str, list[str]] = {"functions": [], "objects": [], "images": [], "lets": [],
                                   "words": []}
    for match in _DEFINITION.finditer(entry):
        if match.group(1):
            found[_KIND[match.group(1)]].append(match.group(2))
        else:
            found["words"] += prompt_words(match.group(4))
    return found


_WORD_AT_END = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*:\s*Image\b")  # `r: Image` in the entry: a source too


def completions(session: Session, before_cursor: str) -> tuple[str, list[str]]:
    """(the word being completed, candidates for it) given the entry's text before the
    cursor. Candidates depend on the place: a command after `:`, a source inside `f[`,
    a module after `use`, a type after `:` in a parameter list, else every name in scope."""
    stripped = before_cursor.lstrip()
    in_command = stripped.startswith(":") and "\n" not in before_cursor
    if in_command and " " not in stripped:
        return stripped[1:], _starting(stripped[1:], COMMAND_NAMES)
    if in_command:
        expr = command_argument_expr(before_cursor)
        if expr is None:
            return "", []
        before_cursor = expr
    match = _WORD_AT_END.search(before_cursor)
    word = match.group() if match else ""
    head = before_cursor[: len(before_cursor) - len(word)]
    line = head.rsplit("\n", 1)[-1]
    names = program_names(session.text)
    for key, more in scan_names(before_cursor).items():
        names[key] = [*names[key], *more]
    if re.search(r"[A-Za-z0-9_]\[$", head):
        return word, _starting(word, ["orig", *names["images"], *_IMAGE_PARAM.findall(before_cursor)])
    if re.search(r"(^|[\s;])use\s+$", head):
        return word, _starting(word, stdlib_modules())
    if re.search(r"\bfn\s+[A-Za-z_]\w*\s*\([^)]*:\s*$|->\s*$|List\[$", head):
        return word, _starting(word, type_names())
    if not in_command and line.strip() == "" and not re.search(r"[(\[,=<>+\-*/]\s*$", head.rstrip("\n")):
        statement_start = [*KEYWORDS, *setting_names()]
    else:
        statement_start = []
    visible = [*names["lets"], *names["objects"], *names["images"], *names["words"],
               *names["functions"], *stdlib_functions().get("prelude", ()),
               *stdlib_functions().get("core", ()), *statement_start, *KEYWORDS]
    return word, _starting(word, visible)


def command_argument_expr(before_cursor: str) -> str | None:
    """The expression part of a `:type EXPR` line, for completing inside it."""
    match = re.match(r"\s*:t(?:y(?:p(?:e)?)?)?\s+(.*)$", before_cursor, re.S)
    return match.group(1) if match else None


def _starting(word: str, names) -> list[str]:
    return [n for n in dict.fromkeys(names) if n.startswith(word) and n != word] if word else \
        list(dict.fromkeys(names))
