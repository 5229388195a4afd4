"""The typing rules of every IR op, in one table: the lowering asks it for result types, the
verifier checks every node against it, the passes ask it which ops are pure arithmetic.

The intrinsic signatures mirror the `extern fn` lines of stdlib/prelude.sgl (a test compares
the two). Arithmetic follows the language's broadcasting rules exactly.
"""

from __future__ import annotations

from sgl.check.types import FEATURES, MAP, SCALAR, VEC2, VECTOR, Type

LEAVES = frozenset({"const", "attn", "feat", "latent", "pixels", "x", "y", "mask"})
READS = frozenset({"attn", "feat", "latent", "pixels"})  # leaves that read a run (arg: (source, …))
# `latent()` and `pixels()` read these pseudo feature layers: the runtime fills them with the
# model's estimate of the clean latent (x̂₀) of the row and with x̂₀ decoded (by the VAE, or the
# decoder distilled from it that a model folder may ship), not with a module's output. Each is
# named after the intrinsic that reads it (the lowering relies on it).
LATENT = "latent"
PIXELS = "pixels"
COMPUTED = frozenset({LATENT, PIXELS})
VALUE_TYPES = (SCALAR, VEC2, MAP, FEATURES, VECTOR)

# ----------------------------------------------------------------------------- arithmetic

_ADD = {(t, t): t for t in (SCALAR, VEC2, MAP, VECTOR)}
_MUL = {
    (SCALAR, SCALAR): SCALAR, (SCALAR, VEC2): VEC2, (VEC2, SCALAR): VEC2,
    (SCALAR, MAP): MAP, (MAP, SCALAR): MAP, (MAP, MAP): MAP,
    (SCALAR, VECTOR): VECTOR, (VECTOR, SCALAR): VECTOR,
}
_DIV = {
    (SCALAR, SCALAR): SCALAR, (VEC2, SCALAR): VEC2, (MAP, SCALAR): MAP, (MAP, MAP): MAP,
    (VECTOR, SCALAR): VECTOR,
}
BINARY = {"add": _ADD, "sub": _ADD, "mul": _MUL, "div": _DIV}
ARITH_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
OP_OF_SYMBOL = {symbol: op for op, symbol in ARITH_SYMBOL.items()}

# ----------------------------------------------------------------------------- intrinsics

# op -> overloads, each (parameter types, result type). Mirrors stdlib/prelude.sgl.
INTRINSICS: dict[str, tuple[tuple[tuple[Type, ...], Type], ...]] = {
    "box": (((SCALAR, SCALAR, SCALAR, SCALAR), MAP),),
    "circle": (((VEC2, SCALAR), MAP),),
    "normalize": (((MAP,), MAP),),
    "softthr": (((MAP, SCALAR), MAP),),
    "hardthr": (((MAP, SCALAR), MAP),),
    "sum": (((MAP,), SCALAR),),
    "mean": (((MAP,), SCALAR),),
    "max": (((MAP,), SCALAR),),
    "min": (((MAP,), SCALAR),),
    "pool": (((FEATURES, MAP), VECTOR),),
    "like": (((FEATURES, VECTOR, SCALAR), MAP),),
    "shift": (((MAP, VEC2), MAP),),
    "scale": (((MAP, SCALAR), MAP),),
    "abs": (((SCALAR,), SCALAR),),
    "sqrt": (((SCALAR,), SCALAR),),
    "norm": (((VEC2,), SCALAR), ((VECTOR,), SCALAR)),
    "dot": (((VEC2, VEC2), SCALAR), ((VECTOR, VECTOR), SCALAR)),
    "relu": (((SCALAR,), SCALAR),),
    # The prelude declares detach on Maps; in the IR the gradient cut wraps any value in it.
    "detach": tuple(((t,), t) for t in VALUE_TYPES),
}
LEAF_INTRINSICS = {"attn": MAP, "feat": FEATURES, "latent": FEATURES, "pixels": FEATURES, "x": MAP, "y": MAP, "mask": MAP}
COMPILE_TIME = frozenset({"objects", "others"})
DISTANCES = frozenset({"l1", "l2"})
# The kinks of the terms' distances are rounded within this much of zero: `l1`'s |d| into a
# parabola (Huber) and a `hinge`'s max(d, 0) into a half-parabola. A constraint whose two sides
# agree up to float noise must give no gradient: at the first step the edited and the original
# run see the same latents, so `centroid(o) = centroid₀(o)` sits at its minimum up to ~1e-7 of
# noise, where |d| has gradient ±1 in a direction the noise picks. With the `shapes` model's unit
# gradient those kicks were as large as the edit's own and changed with the thread count: a
# resize ended 0.25 off its place with one thread and in place with two (docs/benchmarks.md,
# session 21).
ROUNDING = 1e-4


def rounded_hinge(v: float) -> float:
    """max(v, 0) with its kink rounded within ROUNDING (a term `a < b` is hinge(a − b))."""
    if v <= 0.0:
        return 0.0
    return v * v / (2 * ROUNDING) if v < ROUNDING else v - ROUNDING / 2


def result_type(op: str, inputs: tuple[Type, ...]) -> Type | None:
    """The type of `op` applied to values of these types, or None when the op does not
    accept them (leaves are typed by their arg, see `leaf_type`)."""
    if op in BINARY:
        return BINARY[op].get(inputs) if len(inputs) == 2 else None
    if op == "neg":
        return inputs[0] if len(inputs) == 1 and inputs[0] in (SCALAR, VEC2, MAP, VECTOR) else None
    if op == "pack":
        return VEC2 if inputs == (SCALAR, SCALAR) else None
    if op in ("get_x", "get_y"):
        return SCALAR if inputs == (VEC2,) else None
    if op == "hinge":
        return SCALAR if inputs == (SCALAR,) else None
    if op in DISTANCES:
        if len(inputs) == 2 and inputs[0] == inputs[1] and inputs[0] in VALUE_TYPES:
            return SCALAR
        return None
    for params, result in INTRINSICS.get(op, ()):
        if params == inputs:
            return result
    return None


def leaf_type(op: str, arg: object) -> Type | None:
    """The type of a leaf with this arg, or None when the arg is malformed."""
    if op == "const":
        if _is_number(arg):
            return SCALAR
        if isinstance(arg, tuple) and len(arg) == 2 and all(_is_number(a) for a in arg):
            return VEC2
        return None
    if op in READS:
        if not (isinstance(arg, tuple) and len(arg) == 2 and isinstance(arg[0], str) and arg[0]):
            return None
        what = arg[1]
        if op == "attn":
            ok = isinstance(what, tuple) and what and all(isinstance(w, str) and w for w in what)
        else:
            ok = isinstance(what, str) and bool(what)
        return LEAF_INTRINSICS[op] if ok else None
    if op in ("x", "y"):
        return MAP if arg is None else None
    if op == "mask":
        return MAP if isinstance(arg, str) and arg else None
    return None


def _is_number(v: object) -> bool:
    return isinstance(v, float) and v == v and v not in (float("inf"), float("-inf"))
