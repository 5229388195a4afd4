"""`:type EXPR`: the checker's type for an expression, in the scope of the session's program.

The expression is checked as the value of one more top-level `let` after the program, by the
real checker, so it sees exactly the names, objects and sources a constraint would see, and
its mistakes get the checker's own diagnostics, pointed back into what was typed (`<type>`).
"""

from __future__ import annotations

import attrs

from sgl.diagnostics import Diagnostic, Label, SGLError, Span

TYPE_FILE = "<type>"
_IT = "__repl_type_of"
_PLAIN_FILE = "<repl>"


def type_of(session, expr_text: str) -> tuple[str, bool]:
    """(the type, or rendered diagnostics; whether it succeeded)."""
    from sgl.check import check
    from sgl.repl_session import REPL_FILE, file_loader, remap, standin_for
    from sgl.syntax.parse import parse, parse_expr

    expr_text = expr_text.strip()
    try:
        parse_expr(expr_text, TYPE_FILE)
    except SGLError as err:
        return session.render(err.diagnostics, {**err.sources, TYPE_FILE: expr_text}), False

    program_text = session.text
    prefix = standin_for(program_text)
    head = f"{prefix}{program_text}\nlet {_IT} = "
    combined = head + expr_text + "\n"
    try:
        program = parse(combined, REPL_FILE)
        checked = check(program, texts={REPL_FILE: combined}, loader=file_loader(session.base_dir),
                        base_dir=session.base_dir)
    except SGLError as err:
        diags = [_moved(d, len(prefix), len(head), program_text, expr_text) for d in err.diagnostics]
        diags = [d for d in diags if d is not None]
        diags, sources = remap(diags, session.chunks, {**err.sources, REPL_FILE: program_text})
        return session.render(diags, {**sources, TYPE_FILE: expr_text}), False
    value = checked.lets[_IT]
    return str(checked.types[id(value)]), True


def _moved(diag: Diagnostic, prefix: int, head: int, program_text: str, expr_text: str) -> Diagnostic | None:
    """A diagnostic of the combined text, moved onto the program (`<repl>`) or onto the
    expression (`<type>`); None when it is about the hidden stand-in prompt."""
    if diag.span is not None and diag.span.file == _PLAIN_FILE and diag.span.start < prefix:
        return None

    def move(span: Span | None) -> Span | None:
        if span is None or span.file != _PLAIN_FILE:
            return span
        if span.start >= head:
            start = min(span.start - head, len(expr_text))
            return Span.at_offsets(TYPE_FILE, expr_text, start, min(max(span.end - head, start), len(expr_text)))
        if span.start >= head - len(f"let {_IT} = ") - 1:   # the hidden `let` itself
            return Span.at_offsets(TYPE_FILE, expr_text, 0, len(expr_text))
        start = max(span.start - prefix, 0)
        return Span.at_offsets(_PLAIN_FILE, program_text, start,
                               min(max(span.end - prefix, start), len(program_text)))

    return attrs.evolve(diag, span=move(diag.span),
                        labels=tuple(Label(move(lb.span), lb.message) for lb in diag.labels),
                        included_from=tuple(move(s) for s in diag.included_from))
