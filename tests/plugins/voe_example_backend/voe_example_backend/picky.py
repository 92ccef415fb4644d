"""A backend whose parser an airline change broke, and a later release fixed.

``example-picky`` reads the demo airline's JSON API like ``example``, through a
``parse(job, page)`` that `voe reparse` can call on a kept page. Until
``VOE_EXAMPLE_PICKY_FIXED=1`` (the "fixed release") it refuses every page, as a
parser does when the airline renamed a field; the page is kept with the error.
"""

from __future__ import annotations

import json
import os

import requests

from voe.backends.base import ParseError
from voe.model import Answer, Fare, Searched, SearchJob
from voe.settings import Settings
from voe_example_backend import get_search


class PickyAirline:
    """Search ``/api/search``; parse only once the fix is "released"."""

    name = "example-picky"

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.voe_demo_airline_url}/api/search"
        self.timeout = settings.voe_http_timeout

    def search(self, job: SearchJob, http: requests.Session) -> Answer:
        """Fetch the JSON answer of ``job`` and parse it."""
        return self.parse(job, get_search(http, self.url, job, self.timeout).content)

    def parse(self, job: SearchJob, page: bytes) -> Answer:
        """Read one kept or fresh page; ``ParseError`` until the fix is released."""
        if os.environ.get("VOE_EXAMPLE_PICKY_FIXED") != "1":
            raise ParseError("no 'fares' where this parser expects them (airline changed?)",
                             page=page)
        try:
            data = json.loads(page)
            fares = [Fare(r["flight"], r["departure"], r["arrival"], r["price"], r["currency"])
                     for r in data["fares"]]
            search = data["search"]
            answered = Searched(search["origin"], search["destination"], search["date"])
        except (ValueError, KeyError, TypeError) as error:
            raise ParseError(f"unexpected answer: {error}", page=page) from error
        return Answer(fares, answered, page)
