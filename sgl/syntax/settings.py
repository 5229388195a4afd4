"""The settings a program may write (`NAME value` lines): each one's value kind and an example
line. The parser's hints (syntax/errors.py) and the checker (check/settings.py) both read this
one table, so a new setting is added in one place."""

from __future__ import annotations

# name → value kind: "string", "count" (integer ≥ 0), "positive" (integer ≥ 1), "number",
# "fraction" (a number from 0 to 1), "resolution" (positive integer or WxH)
SETTINGS: dict[str, str] = {
    "prompt": "string", "negative": "string", "model": "string", "scheduler": "string",
    "layers": "string", "seed": "count", "steps": "positive", "cfg": "number",
    "strength": "number", "resolution": "resolution", "start": "string", "gradient": "string",
    "recurrence": "positive", "features": "string", "warmup": "fraction",
    "recurrence_until": "fraction", "recurrence_above": "fraction", "recurrence_early": "fraction",
}

# name → a line that sets it, for hints ("write `seed 7`")
EXAMPLES: dict[str, str] = {
    "prompt": 'prompt "a red circle and a blue square"', "negative": 'negative "blurry"',
    "model": 'model "shapes"', "scheduler": 'scheduler "ddim"', "layers": 'layers "up_blocks.1"',
    "seed": "seed 7", "steps": "steps 50", "cfg": "cfg 7.5", "strength": "strength 30",
    "resolution": "resolution 512x768", "start": 'start "photo"', "gradient": 'gradient "unit"',
    "recurrence": "recurrence 3", "features": 'features "up_blocks.2"', "warmup": "warmup 0.2",
    "recurrence_until": "recurrence_until 0.5", "recurrence_above": "recurrence_above 0.1",
    "recurrence_early": "recurrence_early 0.3",
}
