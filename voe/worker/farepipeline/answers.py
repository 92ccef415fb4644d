"""The page must answer the job's search: the route, dates, party, cabin, point of sale and
currency it states are the job's."""

from __future__ import annotations

from voe.backends.base import ParseError
from voe.model import Answer, Searched, SearchJob, parse_options
from voe.settings import Settings


class AnswersSearch:
    """Refuse an answer whose page says it answers another search than the job's.

    Airlines answer another date, another route or a nearby airport (on purpose,
    by a cache mix-up, or when the asked date is sold out); its fares are real but
    not the job's, and stored under the job they would be wrong. The backend reads
    what the page says it answers (``Answer.answered``); a backend that returns a
    plain list of fares cannot say, and then there is nothing to compare. The
    return date is compared too: a page that states no return answers a one-way
    search, and its prices are not a round trip's (nor a round trip's a one-way's); so are
    a multi-city trip's legs.
    When the page states its party, cabin and point of sale (``Searched.options``), they
    are compared with the job's (``SearchOptions.differs``): two adults' prices are not
    one adult's, and an airline that answers in another currency than the one asked
    answers another search.
    """

    calendar_days = True  # it reads a calendar's answer too

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, answer: Answer, job: SearchJob) -> Answer:
        """Return ``answer`` if it answers ``job``'s search, else raise ``ParseError``."""
        said = answer.answered
        if said is None:
            return answer
        asked = Searched(job.origin.upper(), job.destination.upper(), job.date,
                         job.return_date or None, None, job.legs or None)
        page = Searched(said.origin.upper(), said.destination.upper(), said.date,
                        said.return_date or None, None, (said.legs or "").upper() or None)
        if page != asked:
            raise ParseError(f"page answers {page}, asked {asked}", page=answer.page)
        if said.options is not None:
            differs = parse_options(job.options).differs(said.options)
            if differs:
                raise ParseError(f"page answers {page} for {', '.join(differs)}",
                                 page=answer.page)
        return answer
