"""The checker: imports, settings, names, types. `check(program)` → `CheckedProgram`."""

from sgl.check.checker import check

__all__ = ["check"]
