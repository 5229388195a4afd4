"""Where the shipped non-Python files live, both in a checkout and in an installed wheel.

The wheel carries `grammar/` and `stdlib/` under `sgl/_data/`; an editable install or a
checkout reads them from the repository root. Every reader goes through these two functions.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder `name` ("grammar" or "stdlib"), wherever this installation keeps it."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"SGL installation is missing its `{name}/` folder (looked in {_PACKAGE})")


def grammar_path() -> Path:
    return data_dir("grammar") / "sgl.lark"


def stdlib_dir() -> Path:
    return data_dir("stdlib")
