"""A round trip's return leg: every fare of a round-trip job has one, no one-way fare does.

A backend that reads round trips (``round_trips = True``) hands over each fare with its
return flight and times and the total price; a fare without them would be a one-way
price stored as a round trip's, and a one-way job's fare with them a round trip's price
stored as a one-way's. The return flight and times are normalised as the outbound's are
(``voe.worker.farepipeline.flight``, ``voe.worker.farepipeline.times``).
"""

from __future__ import annotations

from voe.backends.base import ParseError
from voe.model import Answer, RoundTripFare, SearchJob
from voe.settings import Settings
from voe.worker.farepipeline.base import refuse_kind
from voe.worker.farepipeline.flight import normalise_flight
from voe.worker.farepipeline.times import normalise_time


def _normal(fare: RoundTripFare) -> RoundTripFare:
    """``fare`` with its return flight and times normalised; ``ValueError`` says what is not."""
    flight = normalise_flight(fare.return_flight)
    departure = normalise_time(fare.return_departure)
    arrival = normalise_time(fare.return_arrival)
    if (flight, departure, arrival) == fare[5:]:
        return fare
    return fare._replace(return_flight=flight, return_departure=departure,
                         return_arrival=arrival)


class ReturnLeg:
    """Refuse a round-trip job's fare without a return leg, and a one-way job's with one."""

    calendar_days = True  # it reads a calendar's answer too

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return ``answer`` with its return legs normalised, or raise ``ParseError``."""
        if not job.return_date:
            refuse_kind(answer, RoundTripFare, "has a return flight, but the job is one-way")
            return answer
        fixed = []
        for number, fare in enumerate(answer, start=1):
            if type(fare) is not RoundTripFare:
                raise ParseError(f"fare {number} ({fare.flight!r}) has no return flight, but "
                                 f"the job is a round trip (return {job.return_date}): a one-way "
                                 "price is not a round trip's", page=answer.page)
            try:
                fixed.append(_normal(fare))
            except ValueError as error:
                raise ParseError(f"fare {number} ({fare.flight!r}): return {error}",
                                 page=answer.page) from None
        return answer.with_fares(fixed)
