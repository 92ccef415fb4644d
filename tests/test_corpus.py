"""The hostile corpus: every bad page ends as a ParseError or exactly the right fares.

tests/corpus/ holds the pages and MANIFEST.json says, for each, what the demo
backend's parser must make of it: ``error`` (a ParseError whose message matches
``match``), ``fares`` (exactly the fares of the manifest's route; with
``first_price``, the price the page itself shows for the first flight instead of
the airline's, for pages that rewrite that price in a format the parser reads), or
``fares-or-error`` (either, but never other fares). The biggest pages are made
here at test time rather than committed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from voe.backends.base import ParseError
from voe.demo.airline.fares import fares_for
from voe.demo.airline.pages import results_page
from voe.demo.backends.parse import MAX_PAGE_BYTES, parse_results
from voe.model import Fare

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())
ROUTE = tuple(MANIFEST["route"])
FARES = fares_for(*ROUTE)
GOOD = results_page(*ROUTE, FARES)


def outcome(page: bytes) -> list[Fare] | ParseError:
    """Parse ``page``: its fares, or the ParseError (anything else fails the test)."""
    try:
        return parse_results(page)
    except ParseError as error:
        assert error.page == page  # the page travels with the error, to be kept
        return error


def test_the_corpus_is_big_enough():
    assert len(MANIFEST["pages"]) >= 30
    assert {path.name for path in CORPUS.iterdir()} == {*MANIFEST["pages"], "MANIFEST.json"}


@pytest.mark.parametrize("name", sorted(MANIFEST["pages"]))
def test_corpus_page(name: str):
    entry = MANIFEST["pages"][name]
    result = outcome((CORPUS / name).read_bytes())
    if entry["expect"] == "fares":
        expected = FARES
        if "first_price" in entry:  # the page shows another price for flight 1, readably
            expected = [FARES[0]._replace(price=entry["first_price"]), *FARES[1:]]
        assert result == expected, (entry["why"], result)
    elif entry["expect"] == "error":
        assert isinstance(result, ParseError), (entry["why"], result)
        assert re.search(entry.get("match", ""), str(result)), (entry["why"], str(result))
    else:
        assert result == FARES or isinstance(result, ParseError), (entry["why"], result)


def test_a_10_mb_page_is_refused_quickly():
    page = GOOD.encode().replace(b"</main>", b"<!--" + b"x" * (10 << 20) + b"--></main>")
    started = time.monotonic()
    result = outcome(page)
    assert isinstance(result, ParseError) and "limit" in str(result)
    assert time.monotonic() - started < 1.0
    assert len(page) > MAX_PAGE_BYTES


def test_deep_nesting_does_not_crash():
    depth = 200_000
    body = GOOD.split("<main>", 1)[1]
    page = ("<html><body>" + "<div>" * depth + "<main>" + body + "</div>" * depth).encode()
    result = outcome(page)
    assert result == FARES or isinstance(result, ParseError)


def test_a_big_valid_page_reads_every_fare():
    fares = fares_for(*ROUTE, flights=5000)
    page = results_page(*ROUTE, fares).encode()
    assert len(page) < MAX_PAGE_BYTES
    assert parse_results(page) == fares


@pytest.mark.parametrize("padding", [
    '<div title="' + "a" * (3 << 20) + '"></div>',  # one enormous attribute
    "<table></table>" * 100_000,  # a crowd of decoy tables
    "<p>" + "&amp;" * 200_000 + "</p>",  # a flood of character references
], ids=["huge-attribute", "many-tables", "many-references"])
def test_bulky_padding_leaves_the_fares_right(padding: str):
    page = GOOD.replace("<main>", "<main>" + padding, 1).encode()
    result = outcome(page)
    assert result == FARES or isinstance(result, ParseError)
    if len(page) <= MAX_PAGE_BYTES:
        assert result == FARES
