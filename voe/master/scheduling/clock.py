"""The schedulers' clock: the wall clock, or one running faster for simulations.

Against an airline whose clock runs ``speed`` times real time from ``origin`` (the demo
airline's ``--clock-speed`` and ``--clock-origin``), the master's schedulers read the same
time: ``origin + (wall - origin) * speed``. At speed 1 it is the wall clock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable


class ScheduleClock:
    """Scheduler time (epoch seconds) as a function of the wall clock."""

    def __init__(self, speed: float = 1.0, origin: float = 0.0,
                 wall: Callable[[], float] = time.time) -> None:
        if speed <= 0:
            raise ValueError("the clock's speed must be positive")
        self.speed, self.origin, self.wall = speed, origin, wall

    def now(self) -> float:
        """Scheduler time now."""
        return self.at(self.wall())

    def at(self, wall: float) -> float:
        """Scheduler time at wall time ``wall``."""
        return self.origin + (wall - self.origin) * self.speed

    def today(self) -> dt.date:
        """The date (UTC) on the scheduler's clock."""
        return dt.datetime.fromtimestamp(self.now(), dt.UTC).date()
