"""SGL's types. Small, closed, hashable: the checker, the IR and the printer share them."""

from __future__ import annotations

import attrs


@attrs.frozen
class Type:
    """`name` is one of BASE_TYPES or "List" (then `elem` is set)."""

    name: str
    elem: "Type | None" = None

    def __str__(self) -> str:
        return f"List[{self.elem}]" if self.name == "List" else self.name


SCALAR = Type("Scalar")
VEC2 = Type("Vec2")
MAP = Type("Map")          # a spatial map on the working grid (resolution-free in the language)
FEATURES = Type("Features")  # a C-channel spatial map (activations)
VECTOR = Type("Vector")    # C channels (e.g. an appearance)
OBJECT = Type("Object")
IMAGE = Type("Image")
STRING = Type("String")
CONSTRAINT = Type("Constraint")  # result of a constraint macro (`fn f(…) { … }`)

BASE_TYPES = {t.name: t for t in (SCALAR, VEC2, MAP, FEATURES, VECTOR, OBJECT, IMAGE, STRING, CONSTRAINT)}


def list_of(elem: Type) -> Type:
    return Type("List", elem)
