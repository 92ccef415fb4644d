"""What the sink's yield watch reads, alike in both SQL stores: per cycle and backend, the
pages stored and their fares, and the fares with each field valid. A mixin of
``SqlStore``: it uses the store's placeholder and its locked ``_one`` and ``_all``."""

from __future__ import annotations

from voe.store import queries


class YieldQueries:
    """The yield part of the ``Store`` contract, over ``SqlStore``'s locked helpers."""

    mark: str

    def result_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with stored results (before ``before`` if given), or None."""
        sql, params = "SELECT MAX(cycle) FROM results", ()
        if before is not None:
            sql, params = f"{sql} WHERE cycle < {self.mark}", (before,)
        return self._one("find a cycle", sql, params)

    def cycle_yields(self, cycle: int) -> dict[str, tuple[int, int]]:
        """Return, per backend, the stored results (successful pages) and fares of ``cycle``."""
        rows = self._all("count fares per page", "SELECT backend, COUNT(*), SUM(fare_count)"
                         f" FROM results WHERE cycle = {self.mark} GROUP BY backend", (cycle,))
        return {backend: (pages, int(fares)) for backend, pages, fares in rows}

    def field_counts(self, cycle: int) -> dict[str, dict[str, tuple[int, int]]]:
        """Return, per backend and field, the fares of ``cycle`` with it valid and invalid."""
        rows = self._all("read the field counts", queries.field_counts_of_cycle(self.mark),
                         (cycle,))
        found: dict[str, dict[str, tuple[int, int]]] = {}
        for backend, field, valid, invalid in rows:
            found.setdefault(backend, {})[field] = (valid, invalid)
        return found

    def field_cycle(self, before: int | None = None) -> int | None:
        """Return the latest cycle with field counts (before ``before`` if given), or None."""
        return self._one("find a cycle", queries.field_cycle(self.mark, before is not None),
                         () if before is None else (before,))
