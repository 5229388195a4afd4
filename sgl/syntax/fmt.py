"""AST → canonical text (`sgl fmt`).

One statement per line, blocks indented 4 spaces, canonical spacing and modifier order,
numbers as written, strings re-escaped, source spellings kept, comments kept where they were
(own-line ones before the statement they precede, trailing ones after it), at most one blank
line where the original had blank lines. The output is parsed again and must give the same
AST (spans ignored) and the same comments; otherwise it is an internal compiler error, never a
silently changed program.
"""

from __future__ import annotations

from sgl.diagnostics import Diagnostic, SGLError, Span
from sgl.syntax import ast
from sgl.syntax.parse import escape_string, parse

INDENT = "    "
ONE_LINE_BLOCK = 100  # a one-statement block stays on its header line when this short
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
BUG_REPORT = "this is a bug in SGL; please report it with the file that triggered it"


def format_source(text: str, file: str = "<input>") -> str:
    """Parse and format; raises SGLError for syntax errors."""
    return format_program(parse(text, file), text)


def format_program(program: ast.Program, text: str | None = None) -> str:
    """The canonical text of `program`, verified by parsing it again."""
    out = _Formatter(program, text).program()
    _verify(program, out)
    return out


def _verify(program: ast.Program, out: str) -> None:
    try:
        again = parse(out, program.file)
        same = again == program and [c.text for c in again.comments] == [c.text for c in program.comments]
    except SGLError:
        same = False
    if not same:
        raise SGLError([Diagnostic(
            "E999", "internal compiler error: formatter changed the program",
            Span(program.file, 1, 1, 1, 1, 0, 0),
            notes=("the file was left unchanged", BUG_REPORT))])


class _Formatter:
    def __init__(self, program: ast.Program, text: str | None):
        self.program_ast = program
        self.lines = text.split("\n") if text is not None else None
        self.comments = sorted((c for c in program.comments if c.span is not None),
                               key=lambda c: c.span.start)
        self.used: set[int] = set()
        self.out: list[str] = []
        self.trailing_comments: list[str] = []  # per output line, "" when none

    # ------------------------------------------------------------------ layout

    def program(self) -> str:
        self.block_body(self.program_ast.statements, "", end=None)
        while self.out and not self.out[-1]:
            self.out.pop()
        lines = _align_trailing_comments(self.out, self.trailing_comments)
        return "\n".join(lines) + "\n" if lines else ""

    def block_body(self, statements, indent: str, end: int | None) -> None:
        """Statements at one level, with the comments before them and, up to `end` (the
        offset of the closing brace, None for the file), the comments after the last one."""
        first = True
        for stmt in statements:
            pending = self.comments_before(stmt.span.start) if stmt.span else []
            inner = self.comments_inside(stmt)
            for comment in pending:
                self.blank_if_needed(comment.span, first)
                self.emit(indent + comment.text)
                first = False
            # Comments moved out of a one-line statement go with it, blank line included.
            self.blank_if_needed(stmt.span, first)
            for comment in inner:
                self.emit(indent + comment.text)
            self.statement(stmt, indent)
            first = False
        for comment in self.comments_before(end):
            self.blank_if_needed(comment.span, first)
            self.emit(indent + comment.text)
            first = False

    def comments_before(self, offset: int | None) -> list[ast.Comment]:
        found = []
        for index, comment in enumerate(self.comments):
            if index in self.used or (offset is not None and comment.span.start >= offset):
                continue
            self.used.add(index)
            found.append(comment)
        return found

    def comments_inside(self, stmt) -> list[ast.Comment]:
        """Comments inside a statement that is written on one line (not in a block body)."""
        if stmt.span is None:
            return []
        body = _block_of(stmt)
        found = []
        for index, comment in enumerate(self.comments):
            if index in self.used or not stmt.span.start <= comment.span.start < stmt.span.end:
                continue
            if body is not None and _block_start(stmt) <= comment.span.start:
                continue
            self.used.add(index)
            found.append(comment)
        return found

    def trailing(self, span: Span | None, line: int | None = None) -> str:
        """A comment on the last line of `span`, after it."""
        if span is None:
            return ""
        line = span.end_line if line is None else line
        for index, comment in enumerate(self.comments):
            if index not in self.used and comment.span.line == line and comment.span.start >= span.end:
                self.used.add(index)
                return comment.text
        return ""

    def blank_if_needed(self, span: Span | None, first: bool) -> None:
        if first or span is None or self.lines is None or not self.out or not self.out[-1]:
            return
        before = span.line - 2
        starts_line = not self.lines[span.line - 1][:span.column - 1].strip()
        if starts_line and 0 <= before < len(self.lines) and not self.lines[before].strip():
            self.emit("")

    def emit(self, line: str, comment: str = "") -> None:
        self.out.append(line.rstrip())
        self.trailing_comments.append(comment)

    # ------------------------------------------------------------------ statements

    def statement(self, stmt, indent: str) -> None:
        body = _block_of(stmt)
        if body is None:
            self.emit(indent + self.simple(stmt), self.trailing(stmt.span))
            return
        header = self.block_header(stmt)
        close = stmt.span.end - 1 if stmt.span else None
        if self.fits_on_one_line(stmt, body, indent + header):
            self.emit(f"{indent}{header} {{ {self.simple(body[0])} }}", self.trailing(stmt.span))
            return
        if not body and not self.has_comments(stmt):
            self.emit(f"{indent}{header} {{}}", self.trailing(stmt.span))
            return
        header_line = stmt.span.line if stmt.span else None
        first_inner = body[0].span.start if body and body[0].span else close
        head_comment = ""
        if header_line is not None:
            head_comment = self.trailing_on_line(header_line, _block_start(stmt), first_inner)
        self.emit(f"{indent}{header} {{", head_comment)
        self.block_body(body, indent + INDENT, close)
        self.emit(f"{indent}}}", self.trailing(stmt.span))

    def trailing_on_line(self, line: int, after: int, before: int | None) -> str:
        for index, comment in enumerate(self.comments):
            if index in self.used or comment.span.line != line or comment.span.start < after:
                continue
            if before is not None and comment.span.start >= before:
                continue
            self.used.add(index)
            return comment.text
        return ""

    def has_comments(self, stmt) -> bool:
        if stmt.span is None:
            return False
        return any(i not in self.used and stmt.span.start <= c.span.start < stmt.span.end
                   for i, c in enumerate(self.comments))

    def fits_on_one_line(self, stmt, body, header: str) -> bool:
        if len(body) != 1 or _block_of(body[0]) is not None or self.has_comments(stmt):
            return False
        return len(f"{header} {{ {self.simple(body[0])} }}") <= ONE_LINE_BLOCK

    def block_header(self, stmt) -> str:
        if isinstance(stmt, ast.For):
            return f"for {stmt.var} in {expr(stmt.iterable)}"
        return f"fn {stmt.name}({params(stmt.params)})" + returns(stmt.returns)

    def simple(self, stmt) -> str:
        """A statement without a block body, on one line."""
        if isinstance(stmt, ast.Setting):
            return f"{stmt.name} {literal(stmt.value)}"
        if isinstance(stmt, ast.Use):
            return "use " + (escape_string(stmt.target) if stmt.is_path else stmt.target)
        if isinstance(stmt, ast.ObjectDecl):
            return f"object {stmt.name} = {escape_string(stmt.phrase.value)}"
        if isinstance(stmt, ast.GenerateImage):
            seed = f" seed {literal(stmt.seed)}" if stmt.seed is not None else ""
            return f"image {stmt.name} = generate {escape_string(stmt.prompt.value)}{seed}"
        if isinstance(stmt, ast.LoadImage):
            return (f"image {stmt.name} = load {escape_string(stmt.path.value)} "
                    f"caption {escape_string(stmt.caption.value)}")
        if isinstance(stmt, ast.Let):
            return f"let {stmt.name} = {expr(stmt.value)}"
        if isinstance(stmt, ast.FnDef):
            head = f"fn {stmt.name}({params(stmt.params)})" + returns(stmt.returns)
            if stmt.extern:
                return "extern " + head
            return f"{head} = {expr(stmt.body)}"
        if isinstance(stmt, ast.Constraint):
            return f"{expr(stmt.lhs)} {stmt.op} {expr(stmt.rhs)}" + modifiers(stmt.modifiers)
        if isinstance(stmt, ast.Objective):
            return f"{stmt.kind} {expr(stmt.expr)}" + modifiers(stmt.modifiers)
        if isinstance(stmt, ast.Apply):
            return expr(stmt.call) + modifiers(stmt.modifiers)
        raise TypeError(f"cannot format {type(stmt).__name__}")


def _align_trailing_comments(code: list[str], comments: list[str]) -> list[str]:
    """Trailing comments of consecutive lines start in one column (two spaces after the
    longest code line of the run), as they were usually aligned by hand."""
    out = list(code)
    run: list[int] = []
    for index in range(len(code) + 1):
        if index < len(code) and comments[index] and _alignable(code[index]) and (
                not run or _indent(code[run[0]]) == _indent(code[index])):
            run.append(index)
            continue
        if run:
            column = max(len(code[i]) for i in run) + 2
            for i in run:
                out[i] = code[i].ljust(column) + comments[i]
            run = []
        if index < len(code) and comments[index]:
            if _alignable(code[index]):
                run = [index]
            else:
                out[index] = code[index] + "  " + comments[index]
    return out


def _alignable(line: str) -> bool:
    """Statement lines align their comments; block headers and closing braces do not."""
    stripped = line.strip()
    return bool(stripped) and not stripped.endswith("{") and stripped != "}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_of(stmt):
    """The statements of a block-bodied statement, else None."""
    if isinstance(stmt, ast.For):
        return stmt.body
    if isinstance(stmt, ast.FnDef) and isinstance(stmt.body, tuple):
        return stmt.body
    return None


def _block_start(stmt) -> int:
    """Offset just after the header of a block statement (an approximation: after the last
    header part that has a span), so that comments after it belong to the body."""
    parts = []
    if isinstance(stmt, ast.For):
        parts = [stmt.iterable.span]
    elif isinstance(stmt, ast.FnDef):
        parts = [stmt.returns.span if stmt.returns else None] + [p.span for p in stmt.params] + [stmt.name_span]
    ends = [s.end for s in parts if s is not None]
    return max(ends) if ends else (stmt.span.start if stmt.span else 0)


# ----------------------------------------------------------------------------- pieces

def params(items) -> str:
    out = []
    for p in items:
        text = f"{p.name}: {type_expr(p.type)}"
        if p.default is not None:
            text += f" = {expr(p.default)}"
        out.append(text)
    return ", ".join(out)


def returns(t) -> str:
    return f" -> {type_expr(t)}" if t is not None else ""


def type_expr(t: ast.TypeExpr) -> str:
    if t.args:
        return f"{t.name}[{', '.join(type_expr(a) for a in t.args)}]"
    return t.name


def modifiers(items) -> str:
    order = {ast.Weight: 0, ast.Window: 1, ast.Using: 2, ast.Margin: 3}
    out = []
    for m in sorted(items, key=lambda m: order[type(m)]):
        if isinstance(m, ast.Weight):
            out.append(f"weight {expr(m.value)}")
        elif isinstance(m, ast.Window):
            out.append(f"from {percent(m.start)}% to {percent(m.end)}%")
        elif isinstance(m, ast.Using):
            out.append(f"using {m.distance}")
        else:
            out.append(f"margin {expr(m.value)}")
    return "".join(" " + m for m in out)


def percent(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def literal(value) -> str:
    if isinstance(value, ast.Resolution):
        return f"{value.width}x{value.height}"
    return expr(value)


def expr(e) -> str:
    """An expression with the fewest parentheses that keep its tree."""
    if isinstance(e, ast.Number):
        return e.text or (str(int(e.value)) if float(e.value).is_integer() else repr(e.value))
    if isinstance(e, ast.String):
        return escape_string(e.value)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Tuple):
        return "(" + ", ".join(expr(i) for i in e.items) + ")"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(expr(i) for i in e.items) + "]"
    if isinstance(e, ast.Call):
        return call_name(e) + "(" + ", ".join(expr(a) for a in e.args) + ")"
    if isinstance(e, ast.Attribute):
        inner = expr(e.value)
        if isinstance(e.value, (ast.BinOp, ast.Neg)):
            inner = f"({inner})"
        return f"{inner}.{e.attr}"
    if isinstance(e, ast.Neg):
        inner = expr(e.operand)
        if isinstance(e.operand, (ast.BinOp, ast.Neg)):
            inner = f"({inner})"
        return "-" + inner
    if isinstance(e, ast.BinOp):
        level = PRECEDENCE[e.op]
        left, right = expr(e.left), expr(e.right)
        if isinstance(e.left, ast.BinOp) and PRECEDENCE[e.left.op] < level:
            left = f"({left})"
        if isinstance(e.right, ast.BinOp) and PRECEDENCE[e.right.op] <= level:
            right = f"({right})"
        return f"{left} {e.op} {right}"
    raise TypeError(f"cannot format {type(e).__name__}")


def call_name(call: ast.Call) -> str:
    source = call.source
    if source is None:
        return call.func
    if source.name == "orig" and source.spelling in ("₀", "_0"):
        return call.func + source.spelling
    return f"{call.func}[{source.name}]"
