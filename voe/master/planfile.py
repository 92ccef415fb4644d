"""Reading a plan file: the TOML tables checked key by key into a ``Plan``.

Split from ``voe.master.plan`` (the plan itself and its jobs) to keep each module short;
``voe.master.plan.load_plan`` is the entry point, and imports this module when called.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from voe.master import retrying
from voe.master.plan import MAX_INTERVAL, SCHEDULERS, Plan, PlanError, RouteSet, default_plan_path
from voe.model import MAX_LEGS, MAX_PASSENGERS, MIN_LEGS, SearchOptions

_AIRPORT = re.compile(r"^[A-Z0-9]{3,4}$")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def read_plan(path: str | Path | None = None,
              backends: Collection[str] | None = None) -> Plan:
    """``voe.master.plan.load_plan``: read, parse and validate a plan file (the demo plan
    when ``path`` is empty), raising ``PlanError`` naming the file and key."""
    plan_path = Path(path) if path else default_plan_path()
    where = str(path) if path else f"demo plan ({plan_path})"
    try:
        raw = plan_path.read_bytes()
    except OSError as error:
        raise PlanError(f"{where}: cannot read the plan file: {error.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlanError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise PlanError(f"{where}: not valid TOML: {error}") from None
    return _Reader(where, data, backends).plan(hashlib.sha256(raw).hexdigest())


class _Reader:
    """Reads one plan's tables, naming the file and key in every error."""

    def __init__(self, where: str, data: dict[str, Any],
                 backends: Collection[str] | None = None) -> None:
        self.where = where
        self.data = data
        self.backends = backends

    def fail(self, key: str, problem: str) -> PlanError:
        return PlanError(f"{self.where}: {key}: {problem}")

    def table(self, name: str, required: bool = True) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", "missing table" if value is None else "must be a table")
        return value

    def integer(self, table: dict[str, Any], prefix: str, key: str, default: int | None,
                low: int, high: int) -> int:
        value = table.get(key, default)
        if value is None:
            raise self.fail(f"{prefix}.{key}", "missing")
        if type(value) is not int or not low <= value <= high:
            raise self.fail(f"{prefix}.{key}",
                            f"must be a whole number from {low} to {high} (got {value!r})")
        return value

    def plan(self, digest: str) -> Plan:
        known = {"plan", "dates", "routes", "search"}
        for key in self.data:
            if key not in known:
                raise self.fail(key, f"unknown key (expected one of {', '.join(sorted(known))})")
        head = self.table("plan")
        dates = self.table("dates")
        name = head.get("name", "plan")
        if not isinstance(name, str) or not name:
            raise self.fail("plan.name", "must be a non-empty string")
        trip = head.get("trip", "oneway")
        if trip not in ("oneway", "round", "multi"):
            raise self.fail("plan.trip", f'must be "oneway", "round" or "multi" (got {trip!r})')
        calendar = dates.get("calendar", False)
        if type(calendar) is not bool:
            raise self.fail("dates.calendar", f"must be true or false (got {calendar!r})")
        if calendar and trip != "oneway":
            raise self.fail("dates.calendar", "a calendar prices one-way trips: use "
                            'trip = "oneway" with calendar = true')
        cheapest_days = self.integer(dates, "dates", "cheapest_days", 0, 0, 31)
        if cheapest_days and not calendar:
            raise self.fail("dates.cheapest_days", "searches in full the cheapest days of "
                            "calendars: set calendar = true too")
        scheduler = self.scheduler(head, calendar)
        stays = dates.get("stay_days", [7])
        if (not isinstance(stays, list) or not stays
                or not all(type(s) is int and 0 <= s <= 365 for s in stays)):
            raise self.fail("dates.stay_days", "must be a list of whole numbers from 0 to 365")
        return Plan(
            name=name,
            source=self.where,
            digest=digest,
            trip=trip,
            interval=self.interval(head.get("cycle", "once")),
            max_attempts=self.integer(head, "plan", "max_attempts", retrying.MAX_ATTEMPTS, 1, 100),
            lease_seconds=float(self.integer(head, "plan", "lease_seconds", 30, 1, 86400)),
            start_in_days=self.integer(dates, "dates", "start_in_days", 1, 0, 3650),
            days_ahead=self.integer(dates, "dates", "days_ahead", None, 1, 3650),
            step_days=self.integer(dates, "dates", "step_days", 1, 1, 3650),
            stay_days=tuple(stays),
            routes=self.routes(trip == "multi"),
            options=self.options(),
            calendar=calendar,
            cheapest_days=cheapest_days,
            retry_delay=self.duration(head, "plan", "retry_delay", retrying.RETRY_DELAY),
            retry_delay_max=self.duration(head, "plan", "retry_delay_max",
                                          retrying.RETRY_DELAY_MAX),
            scheduler=scheduler,
        )

    def scheduler(self, head: dict[str, Any], calendar: bool) -> str:
        """``plan.scheduler``: "cycle" (the default) or a continuous scheduler, which spends
        each backend's budget (``requests_per_second``) instead of running cycles."""
        name = head.get("scheduler", "cycle")
        if name not in SCHEDULERS:
            raise self.fail("plan.scheduler", f"must be one of {', '.join(SCHEDULERS)} "
                            f"(got {name!r})")
        if name == "cycle":
            return name
        if "cycle" in head:
            raise self.fail("plan.cycle", f'the "{name}" scheduler runs searches as they fall '
                            "due, not in cycles: remove cycle")
        if calendar:
            raise self.fail("dates.calendar", f'calendars run in cycles: use scheduler = "cycle"'
                            f' (not "{name}")')
        routes = self.data.get("routes")
        if isinstance(routes, list) and any(
                isinstance(entry, dict) and "requests_per_second" not in entry for entry in routes):
            raise self.fail("routes.requests_per_second", f'the "{name}" scheduler spends a '
                            "budget: set requests_per_second in every [[routes]] table")
        return name

    def options(self) -> tuple[str, ...]:
        """The ``[search]`` table's options as text, one per cabin and point of sale listed
        (none: the defaults, one adult in economy at the airline's own point of sale)."""
        search = self.table("search", required=False)
        unknown = set(search) - set(SearchOptions._fields)
        if unknown:
            raise self.fail(f"search.{sorted(unknown)[0]}",
                            f"unknown key (expected {', '.join(SearchOptions._fields)})")
        party = {name: self.integer(search, "search", name, default, 0, MAX_PASSENGERS)
                 for name, default in (("adults", 1), ("children", 0), ("infants", 0))}
        cabins = self.choices(search, "cabin", "economy", 'a cabin like "business"')
        places = self.choices(search, "pos", "", 'a country code like "US"')
        currency = search.get("currency", "")
        if not isinstance(currency, str):
            raise self.fail("search.currency", f'must be a currency code like "USD" '
                            f"(got {currency!r})")
        found = []
        for cabin, pos in itertools.product(cabins, places):
            options = SearchOptions(**party, cabin=cabin, pos=pos, currency=currency)
            try:
                options.check()
            except ValueError as error:
                key = str(error).split(maxsplit=1)[0].rstrip(",")
                raise self.fail(f"search.{key}", str(error)) from None
            found.append(str(options))
        return tuple(dict.fromkeys(found))

    def choices(self, table: dict[str, Any], key: str, default: str, what: str) -> list[str]:
        """A key that names one value or a list of them (each a search of its own)."""
        value = table.get(key, default)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(item, str) for item in values):
            raise self.fail(f"search.{key}", f"must be {what}, or a list of them (got {value!r})")
        if len(set(values)) != len(values):
            raise self.fail(f"search.{key}", "lists a value twice")
        return values

    def duration(self, table: dict[str, Any], prefix: str, key: str,
                 default: float | None) -> float | None:
        """A pause like "10s", "5m" or a number of seconds (0 allowed), at most a day."""
        if key not in table:
            return default
        value = table[key]
        seconds = -1.0
        if type(value) in (int, float):
            seconds = float(value)
        elif isinstance(value, str) and (match := _INTERVAL.match(value.strip())):
            seconds = float(match[1]) * _UNITS[match[2]]
        if not 0 <= seconds <= 86400:
            raise self.fail(f"{prefix}.{key}",
                            f'must be a pause like "10s", "5m" or "1h" (at most a day; got '
                            f"{value!r})")
        return seconds

    def interval(self, value: Any) -> float | None:
        if value == "once":
            return None
        if type(value) is int and 0 < value <= MAX_INTERVAL:
            return float(value)
        match = _INTERVAL.match(value) if isinstance(value, str) else None
        seconds = float(match[1]) * _UNITS[match[2]] if match else 0
        if not 0 < seconds <= MAX_INTERVAL:
            raise self.fail("plan.cycle",
                            f'must be "once" or an interval like "30m", "6h", "1d" (got {value!r})')
        return seconds

    def itineraries(self, entry: dict[str, Any], key: str) -> tuple[tuple[str, ...], ...]:
        """A multi-city routes table's ``itineraries``: lists of 3 to 7 airport codes."""
        found = entry.get("itineraries")
        example = 'e.g. [["GRU", "REC", "SSA"]]'
        if not isinstance(found, list) or not found:
            raise self.fail(f"{key}.itineraries", "a multi-city plan lists the airports of each "
                            f"trip, {example}")
        trips = []
        for trip in found:
            if (not isinstance(trip, list) or not MIN_LEGS + 1 <= len(trip) <= MAX_LEGS + 1
                    or not all(isinstance(code, str) and _AIRPORT.match(code) for code in trip)):
                raise self.fail(f"{key}.itineraries", f"each trip lists {MIN_LEGS + 1} to "
                                f"{MAX_LEGS + 1} airport codes, {example} (got {trip!r})")
            if any(a == b for a, b in itertools.pairwise(trip)):
                raise self.fail(f"{key}.itineraries", f"a leg flies from an airport to itself "
                                f"(got {trip!r})")
            trips.append(tuple(trip))
        if len(set(trips)) != len(trips):
            raise self.fail(f"{key}.itineraries", "lists a trip twice")
        return tuple(trips)

    def routes(self, multi_city: bool = False) -> tuple[RouteSet, ...]:
        routes = self.data.get("routes")
        if not isinstance(routes, list) or not routes:
            raise self.fail("[[routes]]", "at least one routes table is required")
        result = []
        for index, entry in enumerate(routes):
            key = f"routes[{index}]"
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table")
            backend = entry.get("backend")
            if not isinstance(backend, str) or not backend:
                raise self.fail(f"{key}.backend", "must name a backend, e.g. \"demo\"")
            if self.backends is not None and backend not in self.backends:
                raise self.fail(f"{key}.backend", f"unknown backend {backend!r}; installed: "
                                f"{', '.join(sorted(self.backends)) or 'none'}")
            if multi_city != ("itineraries" in entry):
                raise self.fail(f"{key}.itineraries", "a multi-city plan (trip = \"multi\") "
                                "lists itineraries instead of airports" if multi_city else
                                'only a multi-city plan (trip = "multi") lists itineraries')
            trips = self.itineraries(entry, key) if multi_city else ()
            airports = (sorted({code for trip in trips for code in trip}) if multi_city
                        else entry.get("airports"))
            if not isinstance(airports, list) or len(airports) < 2:
                raise self.fail(f"{key}.airports", "must list at least two airport codes")
            for code in airports:
                if not isinstance(code, str) or not _AIRPORT.match(code):
                    raise self.fail(f"{key}.airports",
                                    f"{code!r} is not an airport code like \"GRU\"")
            if len(set(airports)) != len(airports):
                raise self.fail(f"{key}.airports", "lists an airport twice")
            blocked = set()
            for pair in entry.get("blocked", []):
                if (not isinstance(pair, list) or len(pair) != 2
                        or not all(isinstance(code, str) for code in pair)):
                    raise self.fail(f"{key}.blocked",
                                    f'each entry must be a pair like ["GRU", "GIG"] (got {pair!r})')
                blocked.add((pair[0], pair[1]))
            unknown = set(entry) - {"backend", "airports", "blocked", "requests_per_second",
                                    "max_attempts", "retry_delay", "retry_delay_max",
                                    "itineraries"}
            if unknown:
                raise self.fail(f"{key}.{sorted(unknown)[0]}", "unknown key")
            rps = entry.get("requests_per_second")
            if rps is not None and (type(rps) not in (int, float) or not 0 < rps <= 100_000):
                raise self.fail(f"{key}.requests_per_second",
                                f"must be a positive number of requests per second (got {rps!r})")
            attempts = (None if "max_attempts" not in entry else
                        self.integer(entry, key, "max_attempts", None, 1, 100))
            result.append(RouteSet(backend, tuple(airports), frozenset(blocked),
                                   float(rps) if rps is not None else None, attempts,
                                   self.duration(entry, key, "retry_delay", None),
                                   self.duration(entry, key, "retry_delay_max", None),
                                   trips))
        return tuple(result)
