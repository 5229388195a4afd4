"""Diagnostics: the only kind of error an SGL user ever sees.

A `Diagnostic` stores data (code, severity, message, spans, hint, notes); renderers in
`sgl.render` turn it into text. `SGLError` carries one or more diagnostics across the public
API; nothing else (no Lark, attrs or torch exception) is allowed to reach a user.
"""

from __future__ import annotations

import enum
from typing import Iterable

import attrs


@attrs.frozen(order=False)
class Span:
    """A region of a source text. Lines and columns start at 1; `end_column` is exclusive.

    `start`/`end` are character offsets into the source text (end exclusive). A span with
    start == end marks a position (e.g. end of file).
    """

    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0
    end: int = 0

    @classmethod
    def at_offsets(cls, file: str, text: str, start: int, end: int) -> "Span":
        """The span covering text[start:end], computing lines and columns."""
        line, col = _line_col(text, start)
        end_line, end_col = _line_col(text, end)
        return cls(file, line, col, end_line, end_col, start, end)

    def cover(self, other: "Span") -> "Span":
        """The smallest span covering both (same file assumed)."""
        a, b = (self, other) if self.start <= other.start else (other, self)
        last = self if self.end >= other.end else other
        return Span(a.file, a.line, a.column, last.end_line, last.end_column, a.start, last.end)

    def sort_key(self) -> tuple:
        return (self.file, self.start, self.end)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    last_nl = text.rfind("\n", 0, offset)
    return line, offset - last_nl


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@attrs.frozen
class Label:
    """A secondary span with a short message (rendered with `---`)."""

    span: Span
    message: str = ""


@attrs.frozen
class Diagnostic:
    """One problem found in a program: stable `code` (E0xx errors, W0xx warnings), a terse
    lowercase `message`, the primary `span`, how to fix it (`hint`) and why (`notes`)."""

    code: str
    message: str
    span: Span | None = None
    severity: Severity = Severity.ERROR
    hint: str | None = None
    notes: tuple[str, ...] = ()
    labels: tuple[Label, ...] = ()
    # Import chain: spans of the `use` statements through which the file was reached.
    included_from: tuple[Span, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple:
        span_key = self.span.sort_key() if self.span else ("", -1, -1)
        return (*span_key, self.severity is not Severity.ERROR, self.code, self.message)


def sorted_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Deterministic order (file, offset, severity, code, message), duplicates removed."""
    seen: set = set()
    out = []
    for d in sorted(diags, key=Diagnostic.sort_key):
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


class SGLError(Exception):
    """The one exception type of SGL's public API. Carries its diagnostics (all errors of a
    program at once, plus any warnings found on the way), and the source texts by file name
    so that it can be rendered without re-reading files."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics: list[Diagnostic] = sorted_diagnostics(diagnostics)
        self.sources: dict[str, str] = dict(sources or {})
        super().__init__(self._summary())

    @classmethod
    def single(cls, code: str, message: str, span: Span | None = None, *, hint: str | None = None,
               notes: Iterable[str] = (), sources: dict[str, str] | None = None) -> "SGLError":
        return cls([Diagnostic(code, message, span, hint=hint, notes=tuple(notes))], sources)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def _summary(self) -> str:
        first = self.errors[0] if self.errors else (self.diagnostics[0] if self.diagnostics else None)
        if first is None:
            return "SGL error"
        where = f"{first.span.file}:{first.span.line}:{first.span.column}: " if first.span else ""
        more = len(self.diagnostics) - 1
        return f"{where}{first.severity.value}[{first.code}]: {first.message}" + (f" (+{more} more)" if more else "")

    def render(self, color: bool = False) -> str:
        from sgl.render import render_all

        return render_all(self.diagnostics, self.sources, color=color)
