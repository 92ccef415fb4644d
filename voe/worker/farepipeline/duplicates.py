"""Duplicate flights in one answer: an error, not two rows."""

from __future__ import annotations

from voe.backends.base import ParseError
from voe.model import Answer, MultiCityFare, RoundTripFare, SearchJob
from voe.settings import Settings


class RefuseDuplicates:
    """Refuse an answer listing the same flight at the same departure twice (with the same
    return flight and departure, for a round trip; the same later legs, for a multi-city
    trip).

    A page repeats a row when it is stitched from two responses or pages overlap;
    which of two prices is right cannot be told, and storing both would make one
    flight two fares. Runs after the normalising stages, so ``G3\\xa03573`` and
    ``G3 3573`` are the same flight.
    """

    calendar_days = True  # it reads a calendar's answer too

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return ``answer`` if no flight and departure repeats, else raise ``ParseError``."""
        if len({fare[:2] + fare[5:7] for fare in answer}) == len(answer):
            return answer  # the usual case, told by one set; the loop below names the pair
        seen: dict[tuple[str, ...], int] = {}
        for number, fare in enumerate(answer, start=1):
            first = seen.setdefault(fare[:2] + fare[5:7], number)
            if first != number:
                back = (f", back on {fare[5]} at {fare[6]}," if type(fare) is RoundTripFare
                        else ", with the same later legs," if type(fare) is MultiCityFare else "")
                raise ParseError(f"flight {fare.flight} at {fare.departure}{back} listed twice "
                                 f"(fares {first} and {number})", page=answer.page)
        return answer
