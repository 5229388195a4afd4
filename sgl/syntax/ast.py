"""The SGL abstract syntax tree: frozen attrs nodes, each carrying the `Span` it came from.

Spans are excluded from equality (`eq=False`), so two parses of the same program compare equal
whatever their layout — that is what `sgl fmt` checks after reformatting. Nodes hold plain
data only; the checker and the lowering pass read them, never modify them.
"""

from __future__ import annotations

from typing import Union

import attrs

from sgl.diagnostics import Span

_span = attrs.field(eq=False, repr=False, default=None)


# ----------------------------------------------------------------------------- types

@attrs.frozen
class TypeExpr:
    """A written type: `Scalar`, `Vec2`, `List[Object]`."""

    name: str
    args: tuple["TypeExpr", ...] = ()
    span: Span | None = _span


# ----------------------------------------------------------------------------- expressions

@attrs.frozen
class Number:
    value: float
    text: str = attrs.field(eq=False, default="")  # as written, for fmt (e.g. "0.30")
    span: Span | None = _span


@attrs.frozen
class String:
    value: str
    span: Span | None = _span


@attrs.frozen
class Name:
    """A bare identifier: a variable, parameter, object, prompt word, image or list."""

    id: str
    span: Span | None = _span


@attrs.frozen
class Tuple:
    """`(x, y)`: a Vec2."""

    items: tuple["Expr", ...]
    span: Span | None = _span


@attrs.frozen
class ListExpr:
    """`[a, b, c]`."""

    items: tuple["Expr", ...]
    span: Span | None = _span


@attrs.frozen
class BinOp:
    """`left op right` with op in `+ - * /`."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span | None = _span


@attrs.frozen
class Neg:
    """Unary minus."""

    operand: "Expr"
    span: Span | None = _span


@attrs.frozen
class SourceRef:
    """The source of a call: `orig` for `f₀` / `f_0` / `f[orig]`, or an image name.

    `spelling` keeps how it was written ("₀", "_0" or "[name]") so fmt can keep it.
    """

    name: str
    spelling: str = attrs.field(eq=False, default="")
    span: Span | None = _span


@attrs.frozen
class Call:
    """`func(args)`, optionally read from another source: `func[src](args)`."""

    func: str
    args: tuple["Expr", ...]
    source: SourceRef | None = None
    func_span: Span | None = _span  # span of the function name alone
    span: Span | None = _span


@attrs.frozen
class Attribute:
    """`value.x` / `value.y`."""

    value: "Expr"
    attr: str
    span: Span | None = _span


Expr = Union[Number, String, Name, Tuple, ListExpr, BinOp, Neg, Call, Attribute]


def children(e) -> tuple:
    """The direct sub-expressions of an expression node (leaves have none): the one place
    that knows the shape of every expression, for the checker's walks."""
    if isinstance(e, BinOp):
        return (e.left, e.right)
    if isinstance(e, Neg):
        return (e.operand,)
    if isinstance(e, (Tuple, ListExpr)):
        return tuple(e.items)
    if isinstance(e, Attribute):
        return (e.value,)
    if isinstance(e, Call):
        return tuple(e.args)
    return ()


# ----------------------------------------------------------------------------- modifiers

@attrs.frozen
class Weight:
    value: Expr
    span: Span | None = _span


@attrs.frozen
class Window:
    """`from A% to B%` (`from A%` alone runs to 100 %); percentages as written."""

    start: float
    end: float
    span: Span | None = _span


@attrs.frozen
class Using:
    """`using l1` / `using l2`."""

    distance: str
    span: Span | None = _span


@attrs.frozen
class Margin:
    value: Expr
    span: Span | None = _span


Modifier = Union[Weight, Window, Using, Margin]


# ----------------------------------------------------------------------------- statements

@attrs.frozen
class Setting:
    """`prompt "…"`, `seed 7`, `cfg 7.5`, `resolution 512` / `resolution 512x768`, `model "shapes"`…

    `value` is a Number, a String, or a Resolution.
    """

    name: str
    value: "Number | String | Resolution"
    name_span: Span | None = _span
    span: Span | None = _span


@attrs.frozen
class Resolution:
    """`512x768` (width x height) as the value of `resolution`."""

    width: int
    height: int
    span: Span | None = _span


@attrs.frozen
class Use:
    """`use edits` (a stdlib module; `is_path` False) or `use "file.sgl"` (relative file)."""

    target: str
    is_path: bool
    span: Span | None = _span


@attrs.frozen
class ObjectDecl:
    """`object car = "red car"`."""

    name: str
    phrase: String
    name_span: Span | None = _span
    span: Span | None = _span


@attrs.frozen
class GenerateImage:
    """`image ref = generate "a blue car in the snow" [seed 3]`."""

    name: str
    prompt: String
    seed: Number | None = None
    name_span: Span | None = _span
    span: Span | None = _span


@attrs.frozen
class LoadImage:
    """`image photo = load "photos/house.png" caption "a wooden house"`."""

    name: str
    path: String
    caption: String
    name_span: Span | None = _span
    span: Span | None = _span


@attrs.frozen
class Let:
    name: str
    value: Expr
    name_span: Span | None = _span
    span: Span | None = _span


@attrs.frozen
class Param:
    name: str
    type: TypeExpr
    default: Expr | None = None
    span: Span | None = _span


@attrs.frozen
class FnDef:
    """`fn f(a: T, b: T = d) -> R = expr` (body is an Expr) or `fn f(…) { … }` (body is a
    tuple of statements: a constraint macro). `extern` marks an intrinsic signature from
    `prelude.sgl` (no body)."""

    name: str
    params: tuple[Param, ...]
    returns: TypeExpr | None
    body: "Expr | tuple[Stmt, ...] | None"
    extern: bool = False
    name_span: Span | None = _span
    span: Span | None = _span


@attrs.frozen
class Constraint:
    """`lhs op rhs [modifiers]` with op in `= < > <= >=`."""

    op: str
    lhs: Expr
    rhs: Expr
    modifiers: tuple[Modifier, ...] = ()
    span: Span | None = _span


@attrs.frozen
class Objective:
    """`minimize e` / `maximize e` [modifiers]."""

    kind: str
    expr: Expr
    modifiers: tuple[Modifier, ...] = ()
    span: Span | None = _span


@attrs.frozen
class Apply:
    """A constraint-macro call used as a statement: `keep(dog) weight 2`."""

    call: Call
    modifiers: tuple[Modifier, ...] = ()
    span: Span | None = _span


@attrs.frozen
class For:
    """`for o in others(dog) { … }`."""

    var: str
    iterable: Expr
    body: tuple["Stmt", ...]
    var_span: Span | None = _span
    span: Span | None = _span


Stmt = Union[Setting, Use, ObjectDecl, GenerateImage, LoadImage, Let, FnDef, Constraint,
             Objective, Apply, For]


@attrs.frozen
class Comment:
    """A `# …` comment, kept for the formatter (not part of program meaning)."""

    text: str
    span: Span | None = _span


@attrs.frozen
class Program:
    """One parsed file."""

    statements: tuple[Stmt, ...]
    comments: tuple[Comment, ...] = attrs.field(eq=False, default=())
    file: str = attrs.field(eq=False, default="<input>")
    span: Span | None = _span
