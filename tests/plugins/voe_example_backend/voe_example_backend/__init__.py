"""An out-of-tree voe backend, as the README shows: the demo airline's JSON API.

It knows nothing of ZeroMQ, the ledger or the store: given a job and an HTTP
session, it returns fares or raises a typed error.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import requests

from voe.backends.base import ParseError, PermanentError, TransientError
from voe.model import Fare, SearchJob
from voe.settings import Settings


def get_search(http: requests.Session, url: str, job: SearchJob,
               timeout: float) -> requests.Response:
    """GET the airline's JSON answer to ``job``; map failures to the backend's error kinds."""
    try:
        answer = http.get(url, timeout=timeout, params={
            "origin": job.origin, "destination": job.destination, "date": job.date})
    except requests.RequestException as error:
        raise TransientError(str(error)) from error
    if answer.status_code == 404:
        raise PermanentError("route not flown")
    if answer.status_code >= 500 or answer.status_code == 429:
        raise TransientError(f"HTTP {answer.status_code}")
    return answer


class ExampleAirline:
    """Search ``/api/search`` of the airline at ``VOE_DEMO_AIRLINE_URL``."""

    name = "example"

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.voe_demo_airline_url}/api/search"
        self.timeout = settings.voe_http_timeout

    def search(self, job: SearchJob, http: requests.Session) -> list[Fare]:
        """Fetch and check the fares of ``job``."""
        answer = get_search(http, self.url, job, self.timeout)
        try:
            rows = answer.json()["fares"]
            fares = [Fare(r["flight"], r["departure"], r["arrival"], r["price"], r["currency"])
                     for r in rows]
            for fare in fares:
                if not isinstance(fare.price, str) or Decimal(fare.price) <= 0:
                    raise ValueError(f"bad price {fare.price!r}")
        except (ValueError, KeyError, TypeError, InvalidOperation) as error:
            raise ParseError(f"unexpected answer: {error}", page=answer.content) from error
        return fares
