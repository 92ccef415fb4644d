"""A backend with a bug: a ``KeyError`` of its own on each job's first attempt.

``example-keyerror`` reads the demo airline's JSON API like ``example``, but its
first try of a job looks a route up in a table this "release" forgot to fill. Not a
``BackendError``, and a ``LookupError`` like an unknown backend's: the worker must
log its traceback and retry the job, not fail it for good.
"""

from __future__ import annotations

import requests

from voe.model import Fare, SearchJob
from voe_example_backend import ExampleAirline


class KeyErrorAirline(ExampleAirline):
    """``example``, except that a job's first attempt raises ``KeyError``."""

    name = "example-keyerror"

    # The route table the buggy release forgot to fill.
    routes: dict[str, list[Fare]] = {}

    def search(self, job: SearchJob, http: requests.Session) -> list[Fare]:
        """Raise ``KeyError`` on attempt 1; search like ``example`` after."""
        if job.attempt == 1:
            return self.routes[f"{job.origin}-{job.destination}"]
        return super().search(job, http)
