"""How often to run each search so the most stay fresh within a budget (Cho and Garcia-Molina).

Run every ``1/f`` seconds, a search that changes at rate ``λ`` is fresh a share
``F = (f/λ)(1 - e^(-λ/f))`` of the time. The frequencies that maximise the summed
freshness for ``Σ f = budget`` give every search run the same marginal freshness ``μ``:
``dF/df = h(λ/f)/λ`` with ``h(r) = 1 - (1 + r)e^(-r)``, so ``f = λ / h⁻¹(μλ)``, and a
search with ``μλ >= 1`` (it changes too fast to be worth a request) is not run at all.
``μ`` is found by bisection; ``h⁻¹`` is read from a table.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

# The table of h over r on a log scale: from 1e-4 to 60 (h(60) is 1 to 25 digits).
_R = [10 ** (-4 + index * 0.005) for index in range(int(5.78 / 0.005) + 1)]
_H = [-math.expm1(-r) - r * math.exp(-r) for r in _R]


def freshness(rate: float, frequency: float) -> float:
    """The share of time a search changing at ``rate`` is fresh when run at ``frequency``."""
    if frequency <= 0:
        return 0.0
    if rate <= 0:
        return 1.0
    ratio = rate / frequency
    return -math.expm1(-ratio) / ratio


def _inverse(value: float) -> float | None:
    """``r`` with ``h(r) = value`` (None past the table: a search not worth running)."""
    if value >= _H[-1]:
        return None
    if value <= _H[0]:
        return math.sqrt(2 * value)  # h(r) ~ r²/2 for small r
    index = bisect.bisect_left(_H, value)
    low_h, high_h = _H[index - 1], _H[index]
    share = (value - low_h) / (high_h - low_h)
    return _R[index - 1] + share * (_R[index] - _R[index - 1])


def _frequencies(rates: Sequence[float], level: float) -> list[float]:
    """Each search's frequency at marginal freshness ``level``."""
    out = []
    for rate in rates:
        ratio = _inverse(level * rate) if rate > 0 else None
        out.append(rate / ratio if ratio else 0.0)
    return out


def frequencies(rates: Sequence[float], budget: float) -> list[float]:
    """The frequencies (runs a second) that keep the most of searches changing at ``rates``
    (per second) fresh, summing to ``budget`` runs a second."""
    positive = [rate for rate in rates if rate > 0]
    if not positive or budget <= 0:
        return [0.0] * len(rates)
    # Bracket the level: tiny means every search is run very often, 1/min rate none at all.
    low, high = math.log(1e-12 / max(positive)), math.log(1.0 / min(positive))
    for _ in range(60):
        middle = (low + high) / 2
        if sum(_frequencies(rates, math.exp(middle))) > budget:
            low = middle
        else:
            high = middle
    return _frequencies(rates, math.exp(high))
