"""Text → AST. The only entry points to the parser: `parse`, `parse_expr`, `is_complete`.

Lark builds a parse tree; a separate transformer (`_Builder`) turns it into `sgl.syntax.ast`
nodes with spans. The builder never raises: problems it finds (unknown string escapes,
duplicate modifiers, a call with two sources) are collected as diagnostics.
"""

from __future__ import annotations

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import LarkError, UnexpectedInput, VisitError

from sgl.diagnostics import Diagnostic, SGLError, Span
from sgl.syntax import ast, errors
from sgl.syntax.grammar import COMMENTS, TooDeep, parser

ORIG = "orig"
SUBSCRIPT_ZERO = "₀"
MODIFIER_ORDER = {ast.Weight: 0, ast.Window: 1, ast.Using: 2, ast.Margin: 3}
MODIFIER_WORDS = {ast.Weight: "weight", ast.Window: "from … to …", ast.Using: "using", ast.Margin: "margin"}
COMPARISONS = {"≤": "<=", "≥": ">="}


def parse(text: str, file: str = "<input>") -> ast.Program:
    """Parse a whole file. Raises SGLError with every syntax error found."""
    comments: list[Token] = []
    tree = _parse_tree(text, file, "start", comments)
    builder = _Builder(file, text)
    program = _build(builder, tree, text, file)
    return ast.Program(
        statements=tuple(program),
        comments=tuple(ast.Comment(c.value, builder.token_span(c)) for c in comments),
        file=file,
        span=Span.at_offsets(file, text, 0, len(text)),
    )


def parse_expr(text: str, file: str = "<input>") -> ast.Expr:
    """Parse a bare expression (the REPL's `:type e`)."""
    tree = _parse_tree(text, file, "expr", None)
    return _build(_Builder(file, text), tree, text, file)


def is_complete(text: str) -> bool:
    """Whether REPL input can be submitted: it parses to the end, or it has an error that more
    lines cannot fix (so the error gets shown instead of waiting forever)."""
    if not text.strip():
        return True
    try:
        interactive = parser().parse_interactive(text, start="start")
        interactive.exhaust_lexer()
        return "$END" in interactive.accepts()
    except (LarkError, TooDeep):
        return True


def _parse_tree(text: str, file: str, start: str, comments: list[Token] | None) -> Tree:
    COMMENTS.comments = comments
    try:
        return parser().parse(text, start=start)
    except (UnexpectedInput, TooDeep):
        pass
    except LarkError as exc:  # any other Lark failure is our bug, but still a diagnostic
        raise SGLError([errors.internal(file, text, exc)], {file: text}) from None
    finally:
        COMMENTS.comments = None
    raise SGLError(errors.syntax_diagnostics(text, file, start), {file: text})


def _build(builder: "_Builder", tree: Tree, text: str, file: str):
    try:
        result = builder.transform(tree)
    except RecursionError:
        raise SGLError([errors.too_deep(file, text)], {file: text}) from None
    except VisitError as exc:
        raise SGLError([errors.internal(file, text, exc.orig_exc)], {file: text}) from None
    if builder.problems:
        raise SGLError(builder.problems, {file: text})
    return result


@v_args(meta=True)
class _Builder(Transformer):
    """Parse tree → AST. Method names are the grammar's rule names and aliases."""

    def __init__(self, file: str, text: str):
        super().__init__(visit_tokens=False)
        self.file = file
        self.text = text
        self.problems: list[Diagnostic] = []

    # ------------------------------------------------------------------ spans

    def span(self, meta) -> Span | None:
        if getattr(meta, "empty", True):
            return None
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column,
                    meta.start_pos, meta.end_pos)

    def token_span(self, token: Token) -> Span:
        return Span(self.file, token.line, token.column, token.end_line, token.end_column,
                    token.start_pos, token.end_pos)

    # ------------------------------------------------------------------ program

    def start(self, meta, children):
        return [c for c in children if c is not None]

    def block(self, meta, children):
        return tuple(c for c in children if c is not None)

    # ------------------------------------------------------------------ statements

    def setting(self, meta, children):
        name, value = children
        if value.type == "STRING":
            literal = self._string(value)
        elif value.type == "NUMBER":
            literal = self._number(value)
        else:
            width, height = value.value.split("x")
            literal = ast.Resolution(int(width), int(height), self.token_span(value))
        return ast.Setting(name.value, literal, self.token_span(name), self.span(meta))

    def use(self, meta, children):
        (target,) = children
        if target.type == "STRING":
            return ast.Use(self._string(target).value, True, self.span(meta))
        return ast.Use(target.value, False, self.span(meta))

    def object_decl(self, meta, children):
        name, phrase = children
        return ast.ObjectDecl(_ascii_name(name.value), self._string(phrase), self.token_span(name), self.span(meta))

    def generate_image(self, meta, children):
        name, prompt, *seed = children
        return ast.GenerateImage(_ascii_name(name.value), self._string(prompt),
                                 self._number(seed[0]) if seed else None,
                                 self.token_span(name), self.span(meta))

    def load_image(self, meta, children):
        name, path, caption = children
        return ast.LoadImage(_ascii_name(name.value), self._string(path), self._string(caption),
                             self.token_span(name), self.span(meta))

    def let(self, meta, children):
        name, value = children
        return ast.Let(_ascii_name(name.value), value, self.token_span(name), self.span(meta))

    def fn_expr(self, meta, children):
        name, params, returns, body = children
        return ast.FnDef(_ascii_name(name.value), params, returns, body, False, self.token_span(name), self.span(meta))

    def fn_block(self, meta, children):
        name, params, returns, body = children
        return ast.FnDef(_ascii_name(name.value), params, returns, body, False, self.token_span(name), self.span(meta))

    def extern_fn(self, meta, children):
        name, params, returns = children
        return ast.FnDef(_ascii_name(name.value), params, returns, None, True, self.token_span(name), self.span(meta))

    def params(self, meta, children):
        return tuple(children)

    def param(self, meta, children):
        name, type_, *default = children
        return ast.Param(_ascii_name(name.value), type_, default[0] if default else None, self.span(meta))

    def returns(self, meta, children):
        return children[0] if children else None

    def type(self, meta, children):
        name, *args = children
        return ast.TypeExpr(name.value, tuple(args), self.span(meta))

    def constraint(self, meta, children):
        lhs, op, rhs, *modifiers = children
        return ast.Constraint(op, lhs, rhs, self._modifiers(modifiers), self.span(meta))

    def cmp_op(self, meta, children):
        op = children[0].value
        return COMPARISONS.get(op, op)

    def objective(self, meta, children):
        kind, expr, *modifiers = children
        return ast.Objective(kind, expr, self._modifiers(modifiers), self.span(meta))

    def objective_kind(self, meta, children):
        return children[0].value

    def apply(self, meta, children):
        call, *modifiers = children
        return ast.Apply(call, self._modifiers(modifiers), self.span(meta))

    def for_stmt(self, meta, children):
        var, iterable, body = children
        return ast.For(_ascii_name(var.value), iterable, body, self.token_span(var), self.span(meta))

    # ------------------------------------------------------------------ modifiers

    def weight(self, meta, children):
        return ast.Weight(children[0], self.span(meta))

    def window(self, meta, children):
        start, end = children
        return ast.Window(float(start.value), float(end.value), self.span(meta))

    def window_from(self, meta, children):
        """`from A%`: from A % of the steps to the end."""
        return ast.Window(float(children[0].value), 100.0, self.span(meta))

    def using(self, meta, children):
        return ast.Using(children[0].value, self.span(meta))

    def margin(self, meta, children):
        return ast.Margin(children[0], self.span(meta))

    def _modifiers(self, modifiers: list) -> tuple:
        """Canonical order (weight, window, using, margin); a repeated modifier is an error."""
        first: dict[type, ast.Modifier] = {}
        for modifier in modifiers:
            kind = type(modifier)
            if kind in first:
                self.problems.append(errors.duplicate_modifier(
                    MODIFIER_WORDS[kind], modifier.span, first[kind].span))
            else:
                first[kind] = modifier
        return tuple(sorted(first.values(), key=lambda m: MODIFIER_ORDER[type(m)]))

    # ------------------------------------------------------------------ expressions

    def _binop(op):
        def build(self, meta, children):
            left, right = children
            return ast.BinOp(op, left, right, self.span(meta))
        return build

    add, sub, mul, div = _binop("+"), _binop("-"), _binop("*"), _binop("/")
    del _binop

    def neg(self, meta, children):
        return ast.Neg(children[0], self.span(meta))

    def attribute(self, meta, children):
        value, attr = children
        return ast.Attribute(value, attr.value, self.span(meta))

    def number(self, meta, children):
        return self._number(children[0])

    def string(self, meta, children):
        return self._string(children[0])

    def name(self, meta, children):
        token = children[0]
        return ast.Name(_ascii_name(token.value), self.token_span(token))

    def tuple(self, meta, children):
        return ast.Tuple(tuple(children), self.span(meta))

    def list(self, meta, children):
        return ast.ListExpr(tuple(children), self.span(meta))

    def call(self, meta, children):
        name, *rest = children
        source = rest.pop(0) if rest and isinstance(rest[0], ast.SourceRef) else None
        func, suffix = _split_source_suffix(name.value)
        func_span = self.token_span(name)
        if suffix:
            suffix_span = Span.at_offsets(self.file, self.text, name.end_pos - len(suffix), name.end_pos)
            if source is not None:
                self.problems.append(errors.two_sources(func, suffix_span, source.span))
            else:
                source = ast.SourceRef(ORIG, suffix, suffix_span)
            func_span = Span.at_offsets(self.file, self.text, name.start_pos, name.end_pos - len(suffix))
        return ast.Call(func, tuple(rest), source, func_span, self.span(meta))

    def source(self, meta, children):
        (name,) = children
        return ast.SourceRef(_ascii_name(name.value), f"[{name.value}]", self.span(meta))

    # ------------------------------------------------------------------ literals

    def _number(self, token: Token) -> ast.Number:
        return ast.Number(float(token.value), token.value, self.token_span(token))

    def _string(self, token: Token) -> ast.String:
        value, bad = _unescape(token.value[1:-1])
        span = self.token_span(token)
        for offset, escape in bad:
            start = token.start_pos + 1 + offset
            self.problems.append(errors.bad_escape(
                escape, Span.at_offsets(self.file, self.text, start, start + len(escape))))
        return ast.String(value, span)


def _split_source_suffix(name: str) -> tuple[str, str]:
    """`centroid₀` → ("centroid", "₀"); `centroid_0` → ("centroid", "_0"); else (name, "")."""
    for suffix in (SUBSCRIPT_ZERO, "_0"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def _ascii_name(name: str) -> str:
    """`x₀` and `x_0` are one name."""
    return name.replace(SUBSCRIPT_ZERO, "_0")


ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


def _unescape(body: str) -> tuple[str, list[tuple[int, str]]]:
    """Decode \\" \\\\ \\n; returns the value and the (offset, text) of unknown escapes."""
    out: list[str] = []
    bad: list[tuple[int, str]] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in ESCAPES:
                out.append(ESCAPES[nxt])
            else:
                bad.append((i, body[i:i + 2]))
                out.append(nxt)
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out), bad


def escape_string(value: str) -> str:
    """The inverse of `_unescape`, with quotes: how fmt writes a string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
