"""Did-you-mean suggestions, shared by every stage that reports an unknown name.

Distance is the optimal-string-alignment edit distance (insertions, deletions, substitutions
and swaps of two neighbours), so `dgo` is one edit from `dog`. A suggestion is offered only when
it is close: at most min(len(name) / 2, 5) edits, as stanc3 does.
"""

from __future__ import annotations

from typing import Iterable


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance between `a` and `b`."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name` within the bound, or None.

    Ties are broken by a case-insensitive exact match first, then alphabetically, so the
    answer never depends on the order of `candidates`.
    """
    bound = min(len(name) / 2, 5)
    best: tuple | None = None
    for cand in set(candidates):
        if cand == name:
            continue
        dist = 0 if cand.lower() == name.lower() else edit_distance(name, cand)
        if dist > bound:
            continue
        key = (dist, cand)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]
