"""Fault injection of the demo airline: what a hostile airline does, deterministic with a seed.

Each fault is a rate between 0 and 1. Whether the n-th request for one URL (path
and query) meets a fault is decided by SHA-256 of the seed, the fault's name, the
URL and n, so a run is reproducible whatever order concurrent requests arrive in,
and a retry of the same search can succeed where the first try failed. The
per-client rate limit is the exception: it depends on time, like a real one.

The options are described once, in ``OPTIONS``: ``voe demo-airline`` builds its
flags from it and ``voe run --airline-option NAME=VALUE`` is checked against it.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from voe.casts import between, non_negative_float, non_negative_int

LAYOUTS = ("classic", "new")


def _rate(text: str) -> float:
    return between(float(text), 0.0, 1.0, "must be between 0 and 1")


def _speed(text: str) -> float:
    return between(float(text), 1e-3, 1e9, "must be between 0.001 and 1e9")


def _layout(text: str) -> str:
    if text not in LAYOUTS:
        raise ValueError(f"must be one of {', '.join(LAYOUTS)}")
    return text


@dataclass(frozen=True)
class Option:
    """One option of the demo airline: its flag name, parser, default and meaning."""

    name: str
    cast: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = "RATE"

    @property
    def attribute(self) -> str:
        """The keyword of ``make_app``/``serve`` (and field of ``Faults``) it sets."""
        return self.name.replace("-", "_")


def _share(name: str, help: str) -> Option:
    """A fault met by a share of the requests (0 to 1, ``RATE``), off by default."""
    return Option(name, _rate, 0.0, help)


OPTIONS: tuple[Option, ...] = (
    Option("seed", int, 0, "seed of every fault decision (0)", "N"),
    _share("error-rate", "share of searches answered 500, 502 or 503 (0)"),
    _share("throttle-rate", "share of searches answered 429 with Retry-After (0)"),
    Option("retry-after", non_negative_int, 1, "seconds in Retry-After of 429 answers (1)",
           "SECONDS"),
    _share("slow-rate", "share of searches answered after --slow-ms more (0)"),
    Option("slow-ms", non_negative_int, 2000, "extra delay of slow answers (2000)", "MS"),
    _share("reset-rate", "share of searches whose connection is reset before any answer (0)"),
    _share("truncate-rate", "share of answers cut short (0)"),
    _share("malformed-rate", "share of results pages sent with sloppy but readable markup (0)"),
    Option("layout", _layout, "classic",
           "markup of results pages: classic, or new (a redesign the demo backend cannot read)",
           "LAYOUT"),
    Option("rate-limit", non_negative_float, 0.0,
           "searches per second allowed per client address, beyond which 429 (0: none)",
           "PER_SECOND"),
    Option("block-after", non_negative_int, 0,
           "searches allowed per client address, after which that address gets the block "
           "page (403) for --block-seconds (0: never)", "N"),
    Option("block-seconds", non_negative_float, 30.0,
           "seconds an address stays blocked after --block-after, then starts over (30)",
           "SECONDS"),
    # Blocks and hostile bodies (the fetch chain's faults, see voe.worker.fetch).
    _share("soft-block-rate",
           "share of results pages showing 0 voos and a block banner, in the normal "
           "template (0)"),
    _share("block-rate", "share of searches answered 403 with a block page (0)"),
    _share("captcha-rate", "share of searches redirected (302) to a captcha page at /captcha (0)"),
    _share("trickle-rate", "share of answers whose body is sent one byte a second (0)"),
    _share("endless-rate", "share of answers whose body never ends, until the client leaves (0)"),
    Option("price-drift", _rate, 0.0,
           "share by which each price moves up or down, decided by --seed, route, date and "
           "flight; restart with another seed to plant a price change between cycles (0)",
           "SHARE"),
    # Page faults (voe.demo.airline.pagefaults): results pages that mislead a careless reader.
    _share("wrong-search-rate",
           "share of results pages answering another date, route or nearby airport, as "
           "their heading and date say (0)"),
    _share("hidden-decoy-rate",
           "share of results pages with hidden decoy digits, rows, table and count (0)"),
    _share("duplicate-row-rate", "share of results pages listing one flight twice (0)"),
    _share("price-format-rate",
           "share of results pages writing prices in other common formats, some beside a "
           "struck-through old price (0)"),
    _share("field-format-rate",
           "share of results pages writing flights and times in other common forms "
           "(G3\u00a03573, Voo G3 3573, 05h15) (0)"),
    Option("paginate", non_negative_int, 0,
           "flights per results page, with a pager and next links (0: one page)", "N"),
    # The JavaScript page (voe.demo.airline.jspage).
    Option("js-assets", non_negative_int, 40,
           "sub-resources of the JS page: stylesheets, scripts, images, a font (40)", "N"),
    _share("consent-wall-rate",
           "share of JS-page searches shown a cookie-consent wall until the visitor "
           "accepts (a cookie set by /consent) (0)"),
    # The price process (voe.demo.airline.prices): fares that move, on the airline's clock.
    Option("price-changes", non_negative_float, 0.0,
           "price changes a day of each fare a week before departure, more nearer it and "
           "fewer further (0: prices never change; on: departed dates are not sold)", "N"),
    Option("clock-speed", _speed, 1.0, "simulated seconds of the airline's clock per real "
           "second (1)", "X"),
    Option("clock-start", non_negative_float, 0.0,
           "the airline's clock at its start, in epoch seconds (0: the real time)", "EPOCH"),
    Option("clock-origin", non_negative_float, 0.0,
           "the real time, in epoch seconds, at which the clock reads the real time and from "
           "which it runs clock-speed times faster, as the master's with VOE_CLOCK_ORIGIN "
           "(0: the airline's start)", "EPOCH"),
)

_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Faults:
    """The faults the demo airline injects; all off by default."""

    seed: int = 0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: int = 1
    slow_rate: float = 0.0
    slow_ms: int = 2000
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    malformed_rate: float = 0.0
    layout: str = "classic"
    rate_limit: float = 0.0
    block_after: int = 0
    block_seconds: float = 30.0
    soft_block_rate: float = 0.0
    block_rate: float = 0.0
    captcha_rate: float = 0.0
    trickle_rate: float = 0.0
    endless_rate: float = 0.0
    price_drift: float = 0.0
    price_changes: float = 0.0
    clock_speed: float = 1.0
    clock_start: float = 0.0
    clock_origin: float = 0.0
    wrong_search_rate: float = 0.0
    hidden_decoy_rate: float = 0.0
    duplicate_row_rate: float = 0.0
    price_format_rate: float = 0.0
    field_format_rate: float = 0.0
    paginate: int = 0
    js_assets: int = 40
    consent_wall_rate: float = 0.0

    def __post_init__(self) -> None:
        for option in OPTIONS:
            value = getattr(self, option.attribute)
            try:
                checked = option.cast(str(value))
            except ValueError as error:
                raise ValueError(f"{option.name}={value!r}: {error}") from None
            if checked != value:
                raise ValueError(f"{option.name}={value!r}: not a valid value")

    @property
    def seeded(self) -> bool:
        """True when some fault is decided per request (so requests per URL are counted)."""
        return any((self.soft_block_rate, self.block_rate, self.captcha_rate,
                    self.trickle_rate, self.endless_rate, self.error_rate, self.throttle_rate,
                    self.slow_rate, self.reset_rate,
                    self.truncate_rate, self.malformed_rate, self.wrong_search_rate,
                    self.hidden_decoy_rate, self.duplicate_row_rate, self.price_format_rate,
                    self.field_format_rate, self.consent_wall_rate))

    def number(self, fault: str, url: str, nth: int) -> int:
        """A 64-bit number for the ``nth`` request of ``url``, the same in every run."""
        digest = hashlib.sha256(f"{self.seed}\0{fault}\0{url}\0{nth}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def hits(self, fault: str, url: str, nth: int) -> bool:
        """Whether the ``nth`` request of ``url`` meets ``fault`` (a rate field's name)."""
        rate = getattr(self, f"{fault}_rate")
        if rate <= 0.0:
            return False
        return rate >= 1.0 or self.number(fault, url, nth) < rate * 2**64


def parse_option(text: str) -> tuple[Option, Any]:
    """Parse ``NAME=VALUE`` (e.g. ``error-rate=0.1``); ``ValueError`` says what is wrong."""
    name, equals, value = text.partition("=")
    name = name.strip().lstrip("-").replace("_", "-")
    if not equals:
        raise ValueError(f"airline option {text!r}: expected NAME=VALUE")
    option = _BY_NAME.get(name)
    if option is None:
        raise ValueError(f"unknown airline option {name!r}; known: "
                         f"{', '.join(sorted(_BY_NAME))}")
    try:
        return option, option.cast(value.strip())
    except ValueError as error:
        raise ValueError(f"airline option {name}={value.strip()!r}: {error}") from None


def option_arguments(texts: Iterable[str]) -> list[str]:
    """Turn ``NAME=VALUE`` options into ``voe demo-airline`` flags, checking each one."""
    arguments: list[str] = []
    values = {}
    for text in texts:
        option, value = parse_option(text)
        values[option.attribute] = value
        arguments += [f"--{option.name}", str(value)]
    Faults(**values)
    return arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a ``--NAME`` flag per fault option to ``voe demo-airline``'s parser."""
    for option in OPTIONS:
        parser.add_argument(f"--{option.name}", type=_argparse_type(option),
                            metavar=option.metavar,
                            default=option.default, help=option.help)


def from_arguments(args: argparse.Namespace) -> Faults:
    """The ``Faults`` chosen on the command line."""
    return Faults(**{field.name: getattr(args, field.name) for field in fields(Faults)})


def _argparse_type(option: Option) -> Callable[[str], Any]:
    def cast(text: str) -> Any:
        try:
            return option.cast(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None

    cast.__name__ = option.name
    return cast
