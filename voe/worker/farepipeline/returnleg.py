"""A round trip's return leg: every fare of a round-trip job has one, no one-way fare does.

A backend that reads round trips (``round_trips = True``) hands over each fare with its
return flight and times and the total price; a fare without them would be a one-way
price stored as a round trip's, and a one-way job's fare with them a round trip's price
stored as a one-way's. The return flight and times are normalised as the outbound's are
(``voe.worker.farepipeline.flight``, ``voe.worker.farepipeline.times``).
"""

from __future__ import annotations

from typing import Any

from voe.model import RoundTripFare, SearchJob
from voe.worker.farepipeline.base import TripLegs
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


class ReturnLeg(TripLegs):
    """Refuse a round-trip job's fare without a return leg, and a one-way job's with one."""

    kind = RoundTripFare
    not_asked = "has a return flight, but the job is one-way"
    prefix = "return "

    def asked(self, job: SearchJob) -> bool:
        """Whether ``job`` is a round trip."""
        return bool(job.return_date)

    def missing(self, fare: Any, job: SearchJob) -> str | None:
        """Why ``fare`` is not a round trip's, or None."""
        if type(fare) is not RoundTripFare:
            return (f"has no return flight, but the job is a round trip (return "
                    f"{job.return_date}): a one-way price is not a round trip's")
        return None

    normal = staticmethod(_normal)
