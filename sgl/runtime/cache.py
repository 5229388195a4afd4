"""A cache of unguided source runs (the `orig` run, generated references), so that trying a
new constraint on the same prompt and seed costs only the guided run (the REPL's use)."""

from __future__ import annotations

from typing import Hashable


class RunCache:
    """Maps the settings that determine a source run to its finished `SourceRun` (with its
    per-step recordings). `hits`/`misses` count lookups, for tests and curious users."""

    def __init__(self) -> None:
        self._runs: dict[Hashable, object] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable):
        run = self._runs.get(key)
        if run is None:
            self.misses += 1
        else:
            self.hits += 1
        return run

    def stale(self) -> None:
        """The last hit's run did not fit after all (the sampler re-ran it): count a miss."""
        self.hits -= 1
        self.misses += 1

    def put(self, key: Hashable, run) -> None:
        self._runs[key] = run

    def clear(self) -> None:
        self._runs.clear()

    def __len__(self) -> int:
        return len(self._runs)
