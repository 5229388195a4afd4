"""Benchmarks (`sgl bench NAME`): each prints a readable table of measured numbers and can
write the same result as JSON."""

from __future__ import annotations

import json

from sgl.files import write_text_atomic


def publish(result: dict, table: str, json_path: str | None) -> int:
    """Print `table`; write `result` as JSON to `json_path` when given. The exit status."""
    print(table)
    if json_path:
        write_text_atomic(json_path, json.dumps(result, indent=1))
    return 0
