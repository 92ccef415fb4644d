"""A multi-city trip's later legs: every fare of a multi-city job has one per later leg of
the job, no other job's fare has any.

A backend that reads multi-city trips (``multi_city = True``) hands over each fare with
its first leg's flight and times, the total price, and each later leg's flight and times
(``MultiCityFare``). A fare with fewer legs than the trip would be part of a trip's price
stored as the whole one's. The later legs' flights and times are normalised as the first
leg's are (``voe.worker.farepipeline.flight``, ``voe.worker.farepipeline.times``).
"""

from __future__ import annotations

from voe.backends.base import ParseError
from voe.model import Answer, MultiCityFare, SearchJob
from voe.settings import Settings
from voe.worker.farepipeline.base import refuse_kind
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


class LaterLegs:
    """Refuse a multi-city job's fare without each later leg, and another job's with any."""

    calendar_days = True  # it reads a calendar's answer too (it holds no such fare)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return ``answer`` with its later legs normalised, or raise ``ParseError``."""
        if not job.legs:
            refuse_kind(answer, MultiCityFare, "is a multi-city trip's, but the job is not one")
            return answer
        later = job.legs.count(",")
        fixed = []
        for number, fare in enumerate(answer, start=1):
            if type(fare) is not MultiCityFare or len(fare.legs) != later:
                raise ParseError(f"fare {number} ({fare[0]!r}) has not the {later + 1} legs of "
                                 f"the trip {job.legs}: a part of a trip is not its price",
                                 page=answer.page)
            try:
                fixed.append(_normal(fare))
            except ValueError as error:
                raise ParseError(f"fare {number} ({fare.flight!r}): {error}",
                                 page=answer.page) from None
        return answer.with_fares(fixed)
