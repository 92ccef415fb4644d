"""The null backend: five synthetic fares per job, without any I/O, for messaging benchmarks."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from voe.model import Fare, SearchJob
from voe.settings import Settings

if TYPE_CHECKING:
    import requests

FARES_PER_JOB = 5


class NullBackend:
    """Answer every job at once with the same five fares for its route and date."""

    name = "null"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def search(self, job: SearchJob, http: requests.Session) -> list[Fare]:
        """Return five fares derived from the job's route and date; ``http`` is not used."""
        key = f"{job.origin}-{job.destination}:{job.date}:{job.return_date or ''}"
        digest = hashlib.sha256(key.encode()).digest()
        fares = []
        for index in range(FARES_PER_JOB):
            number = int.from_bytes(digest[index * 4:index * 4 + 4], "big")
            departure = 6 * 60 + index * 150 + number % 60
            cents = 150_00 + number % 4850_00
            fares.append(Fare(
                flight=f"NU {1000 + number % 9000}",
                departure=f"{departure // 60:02d}:{departure % 60:02d}",
                arrival=f"{(departure + 90) // 60:02d}:{(departure + 90) % 60:02d}",
                price=f"{cents // 100}.{cents % 100:02d}",
                currency="BRL",
            ))
        return fares
