"""A calendar's days: a calendar job's answer is days of its month, each once; no other
job's answer holds a calendar's day."""

from __future__ import annotations

from voe.backends.base import ParseError
from voe.model import Answer, CalendarDay, SearchJob, check_date
from voe.settings import Settings
from voe.worker.farepipeline.base import refuse_kind


class CalendarDays:
    """Refuse a calendar whose days are not its month's (or one twice), and a calendar's
    day in the answer of a search of one date.

    An airline's calendar names the cheapest fare of each day of a month; a day of another
    month (a calendar that slid, a cache mix-up) or one listed twice (which of its prices
    is right?) would be stored as a wrong price of that day.
    """

    calendar_days = True  # it reads a calendar's answer too

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return ``answer``, or raise ``ParseError`` naming the first day (or fare) amiss."""
        if not job.calendar:
            refuse_kind(answer, CalendarDay,
                        f"is a calendar's day, but the job searches one date ({job.date})")
            return answer
        seen: dict[str, int] = {}
        for number, day in enumerate(answer, start=1):
            if type(day) is not CalendarDay:
                raise ParseError(f"fare {number} ({day[0]!r}) is no calendar's day, but the job "
                                 f"asks the calendar of {job.date}", page=answer.page)
            try:
                check_date(day.date)
            except ValueError as error:
                raise ParseError(f"day {number}: {error}", page=answer.page) from None
            if day.date[:7] != job.date:
                raise ParseError(f"day {number} ({day.date}) is not in {job.date}, the month "
                                 "asked", page=answer.page)
            first = seen.setdefault(day.date, number)
            if first != number:
                raise ParseError(f"day {day.date} listed twice (days {first} and {number})",
                                 page=answer.page)
        return answer
