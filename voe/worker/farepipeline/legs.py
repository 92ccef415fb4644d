"""A multi-city trip's later legs: every fare of a multi-city job has one per later leg of
the job, no other job's fare has any.

A backend that reads multi-city trips (``multi_city = True``) hands over each fare with
its first leg's flight and times, the total price, and each later leg's flight and times
(``MultiCityFare``). A fare with fewer legs than the trip would be part of a trip's price
stored as the whole one's. The later legs' flights and times are normalised as the first
leg's are (``voe.worker.farepipeline.flight``, ``voe.worker.farepipeline.times``).
"""

from __future__ import annotations

from typing import Any

from voe.model import MultiCityFare, SearchJob
from voe.worker.farepipeline.base import TripLegs
from voe.worker.farepipeline.flight import normalise_flight
from voe.worker.farepipeline.times import normalise_time


def _normal(fare: MultiCityFare) -> MultiCityFare:
    """``fare`` with its later legs normalised; ``ValueError`` says which is not."""
    legs = []
    for number, (flight, departure, arrival) in enumerate(fare.legs, start=2):
        try:
            legs.append((normalise_flight(flight), normalise_time(departure),
                         normalise_time(arrival)))
        except ValueError as error:
            raise ValueError(f"leg {number}: {error}") from None
    found = tuple(legs)
    return fare if found == fare.legs else fare._replace(legs=found)


class LaterLegs(TripLegs):
    """Refuse a multi-city job's fare without each later leg, and another job's with any."""

    kind = MultiCityFare
    not_asked = "is a multi-city trip's, but the job is not one"

    def asked(self, job: SearchJob) -> bool:
        """Whether ``job`` is a multi-city trip."""
        return bool(job.legs)

    def missing(self, fare: Any, job: SearchJob) -> str | None:
        """Why ``fare`` has not the trip's legs, or None."""
        later = job.legs.count(",")
        if type(fare) is not MultiCityFare or len(fare.legs) != later:
            return (f"has not the {later + 1} legs of the trip {job.legs}: a part of a trip "
                    "is not its price")
        return None

    normal = staticmethod(_normal)
