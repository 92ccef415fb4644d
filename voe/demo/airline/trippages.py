"""The demo airline's HTML pages of what it sells beyond a plain one-way search: a trip
search (round trip, multi-city, or a party, cabin or point of sale asked) and a month's
calendar, drawn from the same answers as its JSON API (``voe.demo.airline.trips``).

A trip page states the search it answers in a ``dl.search`` (dates, legs, passengers,
cabin, point of sale, currency), counts its offers (``N ofertas``) and lists each in a
``tr.trip`` of ``table#trips``: a ``td.leg`` per flight (``span.flight``,
``time.departure``, ``time.arrival``) and a ``td.price``. Prices are written the
Brazilian way, ``R$ 1.234,56`` in reais and ``USD 1.234,56`` in another currency.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from voe.demo.airline.pages import city, format_brl, framed

_SEARCH_ITEMS = (("adults", "Adultos"), ("children", "Crianças"), ("infants", "Bebês"))


def format_money(price: str, currency: str) -> str:
    """``R$ 1.234,56`` for reais, ``USD 1.234,56`` for another currency."""
    shown = format_brl(price)
    return shown if currency == "BRL" else f"{currency} {shown[3:]}"


def _heading(airports: Iterable[str]) -> str:
    return " → ".join(f"{city(code)} ({code})" for code in airports)


def _search_list(search: dict[str, Any], items: list[tuple[str, str, str]]) -> str:
    """The page's ``dl.search``: ``items`` (class, label, value), then who travels, the
    cabin, the point of sale and the currency."""
    party = search["passengers"]
    items = [*items, *((name, label, str(party[name])) for name, label in _SEARCH_ITEMS),
             ("cabin", "Cabine", search["cabin"]), ("pos", "País de venda", search["pos"]),
             ("currency", "Moeda", search["currency"])]
    rows = "".join(f'<dt>{escape(label)}</dt><dd class="{name}">{escape(value)}</dd>\n'
                   for name, label, value in items)
    return f'<dl class="search">\n{rows}</dl>\n'


def _leg_cell(leg: dict[str, str]) -> str:
    return (f'<td class="leg"><span class="flight">{escape(leg["flight"])}</span> '
            f'<time class="departure">{escape(leg["departure"])}</time>–'
            f'<time class="arrival">{escape(leg["arrival"])}</time></td>')


def trip_page(answer: dict[str, Any]) -> str:
    """The HTML page of a trip search's JSON ``answer`` (``trips.search``)."""
    search, fares = answer["search"], answer["fares"]
    if "legs" in search:  # multi-city
        legs = search["legs"]
        airports = [legs[0]["origin"], *(leg["destination"] for leg in legs)]
        text = ",".join(f"{leg['origin']}-{leg['destination']}:{leg['date']}" for leg in legs)
        items = [("date", "Ida", legs[0]["date"]), ("legs", "Trechos", text)]
    else:
        airports = [search["origin"], search["destination"]]
        items = [("date", "Ida", search["date"])]
        if search.get("return_date"):
            items.append(("return", "Volta", search["return_date"]))
    parts = [f"<main>\n<h1>{escape(_heading(airports))}</h1>\n", _search_list(search, items),
             f'<p class="summary">{len(fares)} ofertas</p>\n<table id="trips">\n<tbody>\n']
    for fare in fares:
        if "legs" in fare:
            legs = fare["legs"]
        elif "outbound" in fare:
            legs = [fare["outbound"], fare["inbound"]]
        else:
            legs = [fare]
        cells = "".join(_leg_cell(leg) for leg in legs)
        price = escape(format_money(fare["price"], fare["currency"]))
        parts.append(f'<tr class="trip">{cells}<td class="price">{price}</td></tr>\n')
    parts.append("</tbody>\n</table>\n</main>\n")
    return framed(" → ".join(airports), "".join(parts))


def calendar_page(answer: dict[str, Any]) -> str:
    """The HTML page of a calendar's JSON ``answer`` (``trips.calendar``): a ``tr.day``
    (``td.date``, ``td.price``) per day sold."""
    search, days = answer["search"], answer["days"]
    airports = [search["origin"], search["destination"]]
    parts = [f"<main>\n<h1>{escape(_heading(airports))}</h1>\n",
             _search_list(search, [("month", "Mês", search["month"])]),
             f'<p class="summary">{len(days)} dias</p>\n<table id="calendar">\n<tbody>\n']
    for day in days:
        price = escape(format_money(day["price"], day["currency"]))
        parts.append(f'<tr class="day"><td class="date">{escape(day["date"])}</td>'
                     f'<td class="price">{price}</td></tr>\n')
    parts.append("</tbody>\n</table>\n</main>\n")
    return framed(f"{' → '.join(airports)} em {search['month']}", "".join(parts))

