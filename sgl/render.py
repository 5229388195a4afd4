"""Diagnostics as text, rustc/ruff style, and as JSON.

    error[E012]: `dgo` is not a word of the prompt
     --> move.sgl:3:6
      |
    1 | prompt "a dog on a beach"
    2 | seed 7
    3 | size(dgo) = 0.5
      |      ^^^
      |
      = help: did you mean `dog`?

The layout is computed once as a list of styled segments; plain text, rich colour and the
ASCII fallback are three ways of writing the same segments, so they never disagree on columns.
Only the source text is used (never the file system), so rendering cannot fail on I/O.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Iterable

from sgl.diagnostics import Diagnostic, Label, Severity, Span

CONTEXT = 2        # source lines shown before and after each span
TAB = 4            # tab stops in displayed source lines
MAX_SPAN_LINES = 6  # a longer multi-line span shows its first and last lines only

STYLES = {
    "error": "bold red",
    "warning": "bold yellow",
    "header": "bold",
    "gutter": "bold blue",
    "primary_error": "bold red",
    "primary_warning": "bold yellow",
    "secondary": "bold blue",
    "help": "bold cyan",
    "note": "bold",
}

Segment = tuple[str, str | None]   # (text, style name or None)
Line = list[Segment]


def render(diag: Diagnostic, sources: dict[str, str], color: bool = False,
           ascii_only: bool = False) -> str:
    """One diagnostic as text (ANSI colours via rich when `color`)."""
    return _write(_layout(diag, sources), color, ascii_only)


def render_all(diags: Iterable[Diagnostic], sources: dict[str, str], color: bool = False,
               ascii_only: bool = False) -> str:
    """Several diagnostics, separated by blank lines, in the order given (already sorted)."""
    return "\n\n".join(render(d, sources, color, ascii_only) for d in diags)


def diagnostics_json(diags: Iterable[Diagnostic]) -> list[dict]:
    """The machine-readable form: one flat object per diagnostic."""
    out = []
    for d in diags:
        span = d.span
        out.append({
            "code": d.code,
            "severity": d.severity.value,
            "message": d.message,
            "file": span.file if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_column if span else None,
            "hint": d.hint,
        })
    return out


def render_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps(diagnostics_json(diags), indent=2, ensure_ascii=False)


# ----------------------------------------------------------------------------- layout

def _layout(diag: Diagnostic, sources: dict[str, str]) -> list[Line]:
    severity = diag.severity.value
    lines: list[Line] = [[(f"{severity}[{diag.code}]", severity), (f": {diag.message}", "header")]]
    primary_style = f"primary_{severity}"

    # Spans grouped by file: the primary's file first, then the others in order of appearance.
    marks: dict[str, list[tuple[Span, str, str, str]]] = {}
    if diag.span is not None:
        marks.setdefault(diag.span.file, []).append((diag.span, "^", primary_style, ""))
    for label in diag.labels:
        if label.span is not None:
            marks.setdefault(label.span.file, []).append((label.span, "-", "secondary", label.message))

    files = list(marks)
    numbers_width = max((len(str(_last_shown_line(s, sources.get(s.file))))
                         for group in marks.values() for s, *_ in group), default=1)
    pad = " " * numbers_width

    for index, file in enumerate(files):
        group = marks[file]
        anchor = group[0][0]
        line_no, col = _display_line(anchor, sources.get(file))
        arrow = "-->" if index == 0 else ":::"
        where = f"{file}:{line_no}:{col}"
        lines.append([(f"{pad}{arrow} ", "gutter"), (where, None)])
        text = sources.get(file)
        if text is None:
            continue
        lines.append([(f"{pad} |", "gutter")])
        lines += _snippet(group, text, numbers_width)
    if diag.span is not None and diag.span.file in sources and (diag.hint or diag.notes or diag.included_from):
        lines.append([(f"{pad} |", "gutter")])
    if diag.hint:
        lines.append([(f"{pad} = ", "gutter"), ("help", "help"), (f": {diag.hint}", None)])
    for note in diag.notes:
        lines.append([(f"{pad} = ", "gutter"), ("note", "note"), (f": {note}", None)])
    for use in diag.included_from:
        lines.append([(f"{pad} = ", "gutter"), ("note", "note"),
                      (f": in file included from {use.file}:{use.line}:{use.column}", None)])
    return lines


def _last_shown_line(span: Span, text: str | None) -> int:
    last = max(display_position(span, text)[0], span.end_line) + CONTEXT
    return min(last, text.rstrip("\n").count("\n") + 1) if text is not None else last


def display_position(span: Span, text: str | None) -> tuple[int, int]:
    """(line, column) where a span is shown. An empty span at the end of the text (where
    "unexpected end of file" points) is shown just after the last code on the last line
    that has any, not on an empty line past the end."""
    if text is None or span.start != span.end or span.start < len(text.rstrip()) or not text.strip():
        return span.line, span.column
    last = len(text.rstrip())
    line_start = text.rfind("\n", 0, last) + 1
    code = _COMMENT.sub(lambda m: m.group(1) or "", text[line_start:last]).rstrip()
    if code:
        last = line_start + len(code)
    return text.count("\n", 0, last) + 1, last - line_start + 1


_display_line = display_position
_COMMENT = re.compile(r'("(?:[^"\\\n]|\\.)*"?)|#[^\n]*')


def _snippet(group: list[tuple[Span, str, str, str]], text: str, width: int) -> list[Line]:
    source_lines = text.split("\n")
    count = len(source_lines)
    shown: set[int] = set()
    placed = []  # (first line, last line, start col, end col, mark, style, message, at_eof)
    for span, mark, style, message in group:
        first, start_col = _display_line(span, text)
        if span.start == span.end and (first, start_col) != (span.line, span.column):
            last, end_col = first, start_col
            message = message or "end of file"
        else:
            last, end_col = span.end_line, span.end_column
        first = min(max(first, 1), count)
        last = min(max(last, first), count)
        placed.append((first, last, start_col, end_col, mark, style, message))
        if last - first + 1 > MAX_SPAN_LINES:
            body = set(range(first, first + 2)) | set(range(last - 1, last + 1))
        else:
            body = set(range(first, last + 1))
        shown |= body
        shown |= set(range(max(first - CONTEXT, 1), first))
        shown |= set(range(last + 1, min(last + CONTEXT, count) + 1))
    # Trailing empty lines add nothing.
    while shown and max(shown) > 1 and not source_lines[max(shown) - 1].strip() and \
            all(p[1] < max(shown) for p in placed):
        shown.discard(max(shown))

    multi = any(p[1] > p[0] for p in placed)
    out: list[Line] = []
    previous = None
    for number in sorted(shown):
        if previous is not None and number > previous + 1:
            out.append([("...", "gutter")])
        previous = number
        raw = source_lines[number - 1].rstrip("\r")
        display, columns = _expand(raw)
        prefix = "  " if multi else ""
        style_for_bar = None
        for first, last, *_rest in placed:
            if first < last and first <= number <= last:
                prefix = "/ " if number == first else "| "
                style_for_bar = _rest[3]
        line: Line = [(f"{number:>{width}} | ", "gutter")]
        if multi:
            line.append((prefix, style_for_bar))
        line.append((display, None))
        out.append(_trim(line))
        gutter = f"{' ' * width} | " + ("  " if multi else "")
        singles = []
        for first, last, start_col, end_col, mark, style, message in placed:
            if first == last == number:
                begin = columns[min(start_col, len(columns)) - 1]
                finish = columns[min(max(end_col, start_col), len(columns)) - 1]
                singles.append((begin, max(finish - begin, 1), mark, style, message))
            elif first < last and number == last:
                last_char = columns[min(max(end_col - 2, 0), len(columns) - 1)]
                out.append([(f"{' ' * width} | ", "gutter"),
                            ("|" + "_" * (last_char + 1) + mark + (f" {message}" if message else ""), style)])
        out += _underlines(sorted(singles, key=lambda m: m[0]), gutter)
    return out


def _underlines(marks: list, gutter: str) -> list[Line]:
    """Underline lines for the marks on one source line. Marks that do not overlap share one
    line; the rightmost message goes after it, the others hang below on `|` bars (rustc)."""
    overlapping = any(a[0] + a[1] > b[0] for a, b in zip(marks, marks[1:]))
    if overlapping:
        return [line for mark in marks for line in _underlines([mark], gutter)]
    out: list[Line] = []
    if not marks:
        return out
    underline: Line = [(gutter, "gutter")]
    position = 0
    for begin, length, mark, style, _ in marks:
        underline.append((" " * (begin - position), None))
        underline.append((mark * length, style))
        position = begin + length
    last_message, last_style = marks[-1][4], marks[-1][3]
    if last_message:
        underline.append((f" {last_message}", last_style))
    out.append(underline)
    hanging = [m for m in marks[:-1] if m[4]]
    for index in range(len(hanging) - 1, -1, -1):
        for with_message in (False, True):
            line: Line = [(gutter, "gutter")]
            position = 0
            for begin, _, _, style, message in hanging[:index + 1]:
                line.append((" " * (begin - position), None))
                text = message if with_message and (begin, message) == (hanging[index][0], hanging[index][4]) else "|"
                line.append((text, style))
                position = begin + len(text)
            out.append(line)
    return out


def _trim(line: Line) -> Line:
    """No trailing blanks (e.g. an empty source line after the gutter)."""
    text, style = line[-1]
    stripped = text.rstrip()
    if stripped:
        return line[:-1] + [(stripped, style)]
    rest = line[:-1]
    while rest and not rest[-1][0].strip():
        rest = rest[:-1]
    if rest:
        rest[-1] = (rest[-1][0].rstrip(), rest[-1][1])
    return rest


def _expand(raw: str) -> tuple[str, list[int]]:
    """The displayed line (tabs to spaces, control characters made visible) and, for each
    1-based column of the raw line (plus one past the end), its display offset."""
    out: list[str] = []
    columns: list[int] = []
    position = 0
    for char in raw:
        columns.append(position)
        if char == "\t":
            shown = " " * (TAB - position % TAB)
        elif unicodedata.category(char) in ("Cc", "Cf") or char in "\x7f":
            shown = chr(0x2400 + ord(char)) if ord(char) < 0x20 else "\ufffd"
        else:
            shown = char
        out.append(shown)
        position += _width(shown)
    columns.append(position)
    columns.append(position + 1)
    return "".join(out), columns


def _width(shown: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in shown)


# ----------------------------------------------------------------------------- writing

def _write(lines: list[Line], color: bool, ascii_only: bool) -> str:
    if ascii_only:
        lines = [[(_to_ascii(text), style) for text, style in line] for line in lines]
    if not color:
        return "\n".join("".join(text for text, _ in line) for line in lines)
    return _write_rich(lines)


def _to_ascii(text: str) -> str:
    """Every non-ASCII character becomes `?` (one column each, so carets stay aligned)."""
    return "".join(c if ord(c) < 128 else "?" * _width(c) for c in text)


def _write_rich(lines: list[Line]) -> str:
    import io

    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=100_000,
                      soft_wrap=True, highlight=False, emoji=False, markup=False, no_color=False)
    for line in lines:
        text = Text(no_wrap=True, end="\n")
        for part, style in line:
            text.append(part, STYLES.get(style) if style else None)
        console.print(text)
    return buffer.getvalue().rstrip("\n")
