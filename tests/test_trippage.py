"""The demo backend's reader of the airline's trip and calendar pages: it reads what the
JSON API sells, what a person sees and nothing else; anything odd is a parse error with
the page, never a fare."""

from __future__ import annotations

import re

import pytest

from voe.backends.base import ParseError
from voe.demo.airline import trips
from voe.demo.airline.fares import fares_for
from voe.demo.airline.pages import sloppy
from voe.demo.airline.trippages import calendar_page, format_money, trip_page
from voe.demo.airline.trips import Leg, Party, Pricing, Trip
from voe.demo.backends.trippage import parse_calendar_page, parse_trip_page, read_money
from voe.model import MultiCityFare, RoundTripFare, SearchOptions

ROUND = Trip((Leg("GRU", "REC", "2027-02-10"), Leg("REC", "GRU", "2027-02-17")),
             Pricing(Party(2, 1, 0), "business", "US"), round_trip=True)
MULTI = Trip((Leg("GRU", "REC", "2027-02-10"), Leg("REC", "SSA", "2027-02-13"),
              Leg("SSA", "GRU", "2027-02-16")))


def answer(trip: Trip) -> dict:
    return trips.search(trip, lambda *leg: fares_for(*leg))


def page(trip: Trip) -> bytes:
    return trip_page(answer(trip)).encode()


def test_a_round_trip_page_reads_as_the_api_sells_it() -> None:
    read = parse_trip_page(page(ROUND))
    sold = answer(ROUND)["fares"]
    assert read == [RoundTripFare(f["outbound"]["flight"], f["outbound"]["departure"],
                                  f["outbound"]["arrival"], f["price"], "USD",
                                  f["inbound"]["flight"], f["inbound"]["departure"],
                                  f["inbound"]["arrival"]) for f in sold]
    assert read.answered.return_date == "2027-02-17"
    assert read.answered.options == SearchOptions(2, 1, 0, "business", "US", "USD")
    assert parse_trip_page(sloppy(page(ROUND).decode()).encode()) == read  # careless markup


def test_a_multi_city_page_reads_every_leg() -> None:
    read = parse_trip_page(page(MULTI))
    sold = answer(MULTI)["fares"]
    assert read.answered.legs == "GRU-REC:2027-02-10,REC-SSA:2027-02-13,SSA-GRU:2027-02-16"
    assert read == [MultiCityFare(
        *(f["legs"][0][name] for name in ("flight", "departure", "arrival")), f["price"], "BRL",
        tuple(tuple(leg[name] for name in ("flight", "departure", "arrival"))
              for leg in f["legs"][1:])) for f in sold]


def test_a_calendar_page_reads_each_day() -> None:
    sold = trips.calendar("GRU", "REC", "2027-03", Pricing(pos="GB"), lambda *leg: fares_for(*leg))
    read = parse_calendar_page(calendar_page(sold).encode())
    assert [(day.date, day.price, day.currency) for day in read] == [
        (day["date"], day["price"], day["currency"]) for day in sold["days"]]
    assert (read.answered.date, read.answered.options.currency) == ("2027-03", "GBP")


@pytest.mark.parametrize(("price", "currency", "read"), [
    ("R$ 1.234,56", "BRL", "1234.56"), ("USD 1.234,56", "USD", "1234.56"),
    ("USD\xa012,30", "USD", "12.30"), ("CLP 170.000,00", "CLP", "170000.00"),
])
def test_money_is_read_in_the_pages_currency(price: str, currency: str, read: str) -> None:
    assert read_money(price, currency) == read
    assert format_money(read, currency).replace("\xa0", " ") == " ".join(price.split())


@pytest.mark.parametrize(("price", "currency"), [
    ("EUR 12,30", "USD"), ("R$ 12,30", "USD"), ("USD 12.30", "USD"), ("USD 1,234.56", "USD"),
    ("USD 0,00", "USD"), ("12,30", "USD"), ("USD 12,30 + taxas", "USD"), ("US$ 12,30", "USD"),
])
def test_money_in_another_currency_or_shape_is_refused(price: str, currency: str) -> None:
    with pytest.raises(ValueError):
        read_money(price, currency)


def _first_row(html: str) -> int:
    return html.index('<tr class="trip">')


@pytest.mark.parametrize(("change", "error"), [
    (lambda html: html.replace('<dd class="currency">USD</dd>', '<dd class="currency">BRL</dd>'),
     "row 1: unreadable price 'USD .*': no price in reais"),
    (lambda html: html.replace('<dd class="currency">USD</dd>', '<dd class="currency">EUR</dd>'),
     "row 1: price 'USD .*' is not an amount in EUR, the page's currency"),
    (lambda html: html.replace('<dd class="adults">2</dd>', '<dd class="adults">dois</dd>'),
     "the search states adults must be"),
    (lambda html: html.replace('<dt>Volta</dt><dd class="return">2027-02-17</dd>\n', ""),
     "row 1: 2 flights, the trip has 1"),
    (lambda html: re.sub(r'<p class="summary">(\d+) ofertas', r'<p class="summary">9\1 ofertas',
                         html), "announces 9[0-9]+ offers but lists [0-9]+ .cut short"),
    (lambda html: html.replace("</dl>", '<dd class="cabin">economy</dd></dl>'),
     "states its cabin twice"),
    (lambda html: html[:_first_row(html)] + html[_first_row(html):].replace(
        '<td class="price">', '<td class="price"><span style="display:none">9</span>', 1),
     None),  # a hidden digit is not read: the page still reads as sold
    (lambda html: html[:_first_row(html)] + '<tr class="trip" hidden><td>x</td></tr>'
     + html[_first_row(html):], None),  # a hidden decoy row is not read
    (lambda html: html[:_first_row(html)] + html[_first_row(html):].replace(
        '<span class="flight">', '<span class="flight"><script>x</script>', 1),
     "a script element inside"),
    (lambda html: html.replace("<h1>", '<h1 style="display:none">', 1),
     "no route heading"),
    (lambda html: html.replace('id="trips"', 'id="offers"'), "no trips table"),
])
def test_odd_trip_pages_are_parse_errors_with_the_page(change, error) -> None:
    html = change(page(ROUND).decode())
    if error is None:
        assert parse_trip_page(html.encode()) == parse_trip_page(page(ROUND))
        return
    with pytest.raises(ParseError, match=error) as caught:
        parse_trip_page(html.encode())
    assert caught.value.page == html.encode()


def test_a_multi_city_page_whose_heading_is_not_its_legs_is_refused() -> None:
    html = page(MULTI).decode().replace("(SSA)", "(POA)", 1)
    with pytest.raises(ParseError, match="route heading .* is not the legs'"):
        parse_trip_page(html.encode())


def test_a_kept_trip_or_calendar_page_is_reparsed_as_one(make_settings) -> None:
    from voe.demo.backends.page import DemoBackend
    from voe.model import SearchJob

    backend = DemoBackend(make_settings())
    job = SearchJob("demo:GRU-REC:2027-02-10:2027-02-17/adults=2,children=1,cabin=business,"
                    "pos=US", 1, 1, "demo", "GRU", "REC", "2027-02-10", "2027-02-17",
                    "adults=2,children=1,cabin=business,pos=US")
    assert backend.parse(job, page(ROUND)) == parse_trip_page(page(ROUND))
    month = SearchJob("demo:GRU-REC:2027-03", 1, 1, "demo", "GRU", "REC", "2027-03")
    sold = calendar_page(trips.calendar("GRU", "REC", "2027-03", Pricing(),
                                        lambda *leg: fares_for(*leg))).encode()
    assert backend.parse(month, sold) == parse_calendar_page(sold)
