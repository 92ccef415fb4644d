"""The casts of voe's settings: each turns a setting's text into its value, or raises
``ValueError`` saying what is wrong (the settings table names what was expected)."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import TypeVar

# An int or a float, kept as it was by ``between``.
Number = TypeVar("Number", int, float)


def between(number: Number, low: float, high: float, message: str) -> Number:
    """``number`` when ``low <= number <= high`` (NaN never is), else ``ValueError(message)``."""
    if not low <= number <= high:
        raise ValueError(message)
    return number


def port(value: str) -> int:
    return between(int(value), 1, 65535, "out of range")


def port_or_off(value: str) -> int:
    return between(int(value), 0, 65535, "out of range")


def positive_int(value: str) -> int:
    return between(int(value), 1, math.inf, "must be at least 1")


def non_negative_int(value: str) -> int:
    return between(int(value), 0, math.inf, "must not be negative")


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be positive")
    return number


def url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    return value.rstrip("/")


def log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("not one of DEBUG, INFO, WARNING, ERROR")
    return level


def allocator(value: str) -> str:
    choice = value.strip().lower()
    if choice not in {"jemalloc", "system"}:
        raise ValueError("not jemalloc or system")
    return choice


# Playwright's resource types (``Request.resource_type``).
RESOURCE_TYPES = frozenset({"document", "stylesheet", "image", "media", "font", "script",
                            "texttrack", "xhr", "fetch", "eventsource", "websocket",
                            "manifest", "other"})


def resource_types(value: str) -> str:
    types = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(types) - RESOURCE_TYPES)
    if unknown:
        raise ValueError(f"unknown resource type {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(RESOURCE_TYPES))}")
    return ",".join(types)


def viewport(value: str) -> str:
    width, separator, height = value.strip().lower().partition("x")
    if not separator:
        raise ValueError("must be WIDTHxHEIGHT, e.g. 1280x64")
    sizes = [between(int(size), 16, 10_000, "each side must be 16 to 10000 pixels")
             for size in (width, height)]
    return f"{sizes[0]}x{sizes[1]}"


def text(value: str) -> str:
    return value


def non_negative_float(value: str) -> float:
    return between(float(value), 0, math.inf, "must not be negative")


def proxy(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    return value


def proxy_list(value: str) -> str:
    if not value.strip():
        return ""  # no proxies: the fetch chain (and requests) need not be imported
    from voe.worker.fetch.identities import (
        parse_proxies,  # here: the fetch chain reads the settings
    )

    return ",".join(parse_proxies(value))


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"true", "yes", "on", "1"}:
        return True
    if lowered in {"false", "no", "off", "0"}:
        return False
    raise ValueError("not true or false")


def url_or_empty(value: str) -> str:
    return url(value) if value else ""


def ipv4_network_or_empty(value: str) -> str:
    return str(ipaddress.IPv4Network(value, strict=False)) if value else ""


def cluster_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}", value):
        raise ValueError("not a cluster name")
    return value


def store_url(value: str) -> str:
    if value and not value.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise ValueError("not empty, a postgresql:// URL or a sqlite:/// URL")
    return value


def ssh_address(value: str) -> str:
    if value.lower() not in {"public", "private"}:
        raise ValueError("not public or private")
    return value.lower()


def amqp_url_or_empty(value: str) -> str:
    if value and not value.startswith(("amqp://", "amqps://")):
        raise ValueError("not empty or an amqp:// URL")
    return value


def nats_url_or_empty(value: str) -> str:
    if value and not all(part.strip().startswith(("nats://", "tls://", "ws://", "wss://"))
                         for part in value.split(",")):
        raise ValueError("not empty or nats:// URLs")
    return value


def nats_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError("not letters, digits, - and _")
    return value


def nats_subject(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", value):
        raise ValueError("not a subject without wildcards")
    return value


def url_list(value: str) -> str:
    urls = [url(part) for part in re.split(r"[\s,]+", value) if part]
    return ",".join(urls)


def status_list(value: str) -> str:
    statuses = [int(part) for part in re.split(r"[\s,]+", value) if part]
    if any(not 100 <= status <= 599 for status in statuses):
        raise ValueError("not HTTP statuses")
    return ",".join(str(status) for status in statuses)


def share(value: str) -> float:
    """A share from 0 to 0.5 (of a budget)."""
    return between(float(value), 0.0, 0.5, "must be from 0 to 0.5")
