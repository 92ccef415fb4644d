"""Page faults of the demo airline: results pages that mislead a careless scraper.

Each fault is a rate (``voe.demo.airline.faults``), decided per URL and try from the
seed like every other fault, and each variant within a fault is chosen the same way,
so every case is reproducible. What a page shows stays true for a person reading
it; the JSON API (``/api/search``) stays the truth of each search:

- ``wrong-search``: the page answers another date, another route or a nearby
  airport, and its heading and date say so (the fares are that search's);
- ``hidden-decoy``: digits hidden inside prices, hidden decoy rows, a hidden decoy
  table and a hidden decoy flight count (``display:none``, ``visibility:hidden``,
  ``hidden``, ``aria-hidden``);
- ``duplicate-row``: one flight listed twice (and counted twice);
- ``price-format``: prices as ``R$ 3 772,89`` (no-break or thin space), ``BRL
  3772.89``, ``R$3.772,89``, whole reais when there are no cents, and an old price
  struck through beside the new one;
- ``field-format``: flights as ``G3\\xa03573``, ``Voo G3 3573`` or ``G33573``, times
  as ``05h15`` or ``5:15``;
- ``paginate`` (a number, not a rate): N flights per page, with a pager and a next
  link (``&page=2``); the flight count is the whole result's.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode

from voe.demo.airline.fares import AIRPORTS, drift_prices, fares_for
from voe.demo.airline.pages import _CARRIER_NAMES, _FOOTER, _HEAD, _ROW, city, format_brl
from voe.model import Fare

# Airports close enough that a site may answer one for the other.
NEARBY = {"GRU": "CGH", "CGH": "GRU", "GIG": "SDU", "SDU": "GIG"}
PAGE_FAULTS = ("wrong_search", "hidden_decoy", "duplicate_row", "price_format", "field_format")


class NoSuchPage(LookupError):
    """A ``page`` parameter beyond the result's pages (or not a number)."""


def active(faults: Any) -> bool:
    """Whether any page fault is on (else the plain, faster results page is served)."""
    return bool(faults.paginate) or any(getattr(faults, f"{name}_rate") for name in PAGE_FAULTS)


def _search_fares(app: Any, origin: str, destination: str, date: str) -> list[Fare]:
    """The fares the airline has for a search, as ``/api/search`` would answer them."""
    return drift_prices(fares_for(origin, destination, date, app.flights),
                        f"{origin}-{destination}:{date}", app.faults.seed,
                        app.faults.price_drift)


def _wrong_search(kind: int, origin: str, destination: str, date: str) -> tuple[str, str, str]:
    """Another search than the one asked: the next day, another route or a nearby airport."""
    if kind % 3 == 2:
        if destination in NEARBY and NEARBY[destination] != origin:
            return origin, NEARBY[destination], date
        if origin in NEARBY and NEARBY[origin] != destination:
            return NEARBY[origin], destination, date
    if kind % 3 >= 1:
        others = sorted(set(AIRPORTS) - {origin, destination})
        return origin, others[kind % len(others)], date
    day = datetime.date.fromisoformat(date) + datetime.timedelta(days=1)
    return origin, destination, day.isoformat()


def _price_html(fare: Fare, choice: int) -> str:
    """The price cell of a fare in one of the formats a person reads the same."""
    price = Decimal(fare.price)
    shown = format_brl(fare.price)  # R$ 1.234,56
    amount = shown[3:]
    kind = choice % 9
    if kind == 0:
        return "R$ " + amount.replace(".", "\xa0")
    if kind == 1:
        return "R$ " + amount.replace(".", "\u2009")
    if kind == 2:
        return f"BRL {price:.2f}"
    if kind == 3:
        return "R$" + amount
    if kind == 4 and price == price.to_integral_value():
        return shown[:-3]  # whole reais: R$ 1.234
    old = escape(format_brl(str((price * Decimal("1.25")).quantize(Decimal("0.01")))))
    struck = ("<s>{}</s>", "<del>{}</del>", "<strike>{}</strike>",
              '<span class="old-price">{}</span>', '<span class="price-was">{}</span>')
    return struck[choice % len(struck)].format(old) + " " + escape(shown)


def _flight_text(flight: str, choice: int) -> str:
    kind = choice % 4
    if kind == 0:
        return flight.replace(" ", "\xa0")
    if kind == 1:
        return f"Voo {flight}"
    if kind == 2:
        return flight.replace(" ", "")
    return flight.replace(" ", "\u2009")


def _time_text(clock: str, choice: int) -> str:
    kind = choice % 3
    if kind == 0:
        return clock.replace(":", "h")
    if kind == 1:
        return clock.lstrip("0") if not clock.startswith("00") else clock[1:]
    return clock


def _decoy_row(fare: Fare, hiding: str) -> str:
    return (f'<tr class="flight" {hiding}><td class="flight">{escape(fare.flight)}</td>'
            f'<td class="departure">{escape(fare.departure)}</td>'
            f'<td class="arrival">{escape(fare.arrival)}</td>'
            '<td class="price">R$ 1,00</td></tr>\n')


def render(app: Any, query: str, url: str, nth: int, origin: str, destination: str, date: str,
           fares: Sequence[Fare]) -> str:
    """The classic results page of a search, with the page faults ``app`` injects (if any).

    ``app`` is the ``DemoAirline`` (its faults, flights and fault counter); ``url``
    and ``nth`` identify the request, as for every fault decision. Raises
    ``NoSuchPage`` for a ``page`` parameter beyond the result.
    """
    faults = app.faults
    hits = {name: app._fault(name, url, nth) for name in PAGE_FAULTS}  # counted once a page

    def number(name: str) -> int:
        return faults.number(name, url, nth)

    if hits["wrong_search"]:
        origin, destination, date = _wrong_search(number("wrong-search-kind"), origin,
                                                   destination, date)
        fares = _search_fares(app, origin, destination, date)
    total = len(fares)
    fares, page_number, pages = _paginate(query, fares, faults.paginate)
    rows = [_row(fare, index, hits, number) for index, fare in enumerate(fares)]
    decoys = hits["hidden_decoy"]
    decoy_bits = number("hidden-decoy-kind") if decoys else 0
    if decoys:
        rows = _with_decoy_rows(rows, fares, decoy_bits)
    if fares and hits["duplicate_row"]:
        twice = number("duplicate-row-which") % len(rows)
        rows.insert(twice + 1, rows[twice])
        total += 1
    route = f"{city(origin)} ({origin}) → {city(destination)} ({destination})"
    parts = [_HEAD.format(title=escape(f"{origin} → {destination} em {date}")), "<main>\n"]
    if decoys:
        parts.extend(_decoy_landmarks(decoy_bits, total, date))
    parts.append(
        f'<h1>{escape(route)}</h1>\n'
        f'<p class="summary">{total} voos em <time datetime="{escape(date)}">'
        f"{escape(date)}</time></p>\n"
        '<table id="results">\n<thead>\n<tr><th>Companhia</th><th>Voo</th><th>Partida</th>'
        "<th>Chegada</th><th>Paradas</th><th>Cabine</th><th>Preço</th><th></th></tr>\n"
        "</thead>\n<tbody>\n")
    parts.extend(rows)
    if not fares:
        parts.append('<tr class="empty"><td colspan="8">Nenhum voo encontrado.</td></tr>\n')
    parts.append("</tbody>\n</table>\n")
    if pages > 1:
        parts.append(_pager(query, page_number, pages))
    parts.append("</main>\n")
    parts.append(_FOOTER)
    return "".join(parts)


def _paginate(query: str, fares: Sequence[Fare],
              per_page: int) -> tuple[Sequence[Fare], int, int]:
    """The fares on the page ``query`` asks for, its number and the result's pages
    (all fares, 1, 1 unless ``paginate`` is on); ``NoSuchPage`` for a page beyond them."""
    if not per_page:
        return fares, 1, 1
    pages = max(1, math.ceil(len(fares) / per_page))
    given = parse_qs(query).get("page", ["1"])
    if len(given) != 1 or not given[0].isdigit() or not 1 <= int(given[0]) <= pages:
        raise NoSuchPage(f"no page {given[0]!r} of this search ({pages} pages)")
    page_number = int(given[0])
    start = (page_number - 1) * per_page
    return fares[start:start + per_page], page_number, pages


def _decoy_landmarks(bits: int, total: int, date: str) -> list[str]:
    """A hidden decoy results table and a hidden decoy flight count, as ``bits`` choose."""
    parts = []
    if bits & 4:
        parts.append('<div style="visibility: hidden"><table id="results"><tr class="flight">'
                     '<td class="flight">G3 1000</td><td class="departure">06:00</td>'
                     '<td class="arrival">07:00</td><td class="price">R$ 1,00</td></tr>'
                     "</table></div>\n")
    if bits & 8:
        parts.append(f'<p class="summary" hidden>{total + 3} voos em {escape(date)}</p>\n')
    return parts


def _row(fare: Fare, index: int, hits: dict[str, bool],
         number: Callable[[str], int]) -> str:
    """One ``tr.flight``, its fields in the formats the faults hitting this page choose."""
    carrier = fare.flight.split(" ", 1)[0]
    price = escape(format_brl(fare.price))
    flight, departure, arrival = fare.flight, fare.departure, fare.arrival
    if hits["price_format"]:
        price = _price_html(fare, number(f"price-format-{index}"))
    if hits["hidden_decoy"]:
        digit = number(f"hidden-digit-{index}") % 9 + 1
        price = price.replace("R$ ", f'R$ <span style="display:none">{digit}</span>', 1)
    if hits["field_format"]:
        choice = number(f"field-format-{index}")
        flight = _flight_text(flight, choice)
        departure = _time_text(departure, choice // 4)
        arrival = _time_text(arrival, choice // 12)
    return _ROW.format(code=escape(fare.flight),
                       carrier=escape(_CARRIER_NAMES.get(carrier, carrier)),
                       flight=escape(flight), departure=escape(departure),
                       arrival=escape(arrival), price=price)


def _with_decoy_rows(rows: list[str], fares: Sequence[Fare], bits: int) -> list[str]:
    """Slip hidden decoy rows (a fake cheap fare) among the real ones."""
    decoy = Fare("G3 1000", "06:00", "07:00", "1.00", "BRL")
    hidings = ('style="display: none"', "hidden", 'aria-hidden="true"')
    rows = list(rows)
    for turn, hiding in enumerate(hidings):
        if bits & (1 << turn) or turn == 0:
            rows.insert((bits >> 4) % (len(rows) + 1), _decoy_row(decoy, hiding))
    return rows


def _pager(query: str, page_number: int, pages: int) -> str:
    """The pager: "Página k de n" and, but on the last page, a link to the next one."""
    parts = [f'<nav class="pager"><span>Página {page_number} de {pages}</span>']
    if page_number < pages:
        params = {name: values[0] for name, values in parse_qs(query).items()}
        params["page"] = str(page_number + 1)
        parts.append(f' <a rel="next" href="/search?{escape(urlencode(params))}">Próxima</a>')
    parts.append("</nav>\n")
    return "".join(parts)
