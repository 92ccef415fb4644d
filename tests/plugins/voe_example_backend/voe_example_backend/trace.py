"""A third-party fetch middleware and fare pipeline stage that note what they saw.

Each appends one line per request or answer to the file named by
``VOE_EXAMPLE_TRACE`` (nothing when unset), so a test can tell where in the chain
and the pipeline they ran: whether voe's deadline middleware had set the request's
deadline when the middleware saw it, and the first flight code of an answer when the
stage saw it.
"""

from __future__ import annotations

import os

from voe.model import Answer, SearchJob
from voe.settings import Settings
from voe.worker.fetch import FetchRequest


def _note(line: str) -> None:
    path = os.environ.get("VOE_EXAMPLE_TRACE")
    if path:
        with open(path, "a", encoding="utf-8") as trace:
            trace.write(line + "\n")


class TraceFetch:
    """Note whether a request has its deadline: voe's Deadline middleware (100) sets it."""

    order = 600

    def process_request(self, request: FetchRequest) -> None:
        """Note whether the deadline is set at this point of the chain."""
        _note("fetch with a deadline" if request.deadline is not None else
              "fetch without a deadline")


class TraceFares:
    """Note each answer's first flight: voe's flight stage (200) normalised it before."""

    order = 950

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Note the first flight code as this stage sees it; change nothing."""
        if answer:
            _note(f"fares {answer[0].flight}")
        return answer
