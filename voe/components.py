"""Ordered plugin components: built-ins with order numbers, entry points, and a setting.

The fetch chain (``voe.fetch_middlewares``) and the fare pipeline
(``voe.fare_pipelines``) are both built the way Scrapy builds its middlewares from
``*_BASE`` dicts: the built-ins by order number, then each class of the entry-point
group at its ``order`` attribute (``DEFAULT_ORDER`` when absent), then the setting
(``module:Class=ORDER`` adds or moves one, ``module:Class=none`` removes one). This
module imports nothing of voe, so the settings can check that syntax at load.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points

# Order of an entry-point class without an ``order`` attribute (built-ins use 50 to 900).
DEFAULT_ORDER = 500

_ITEM = re.compile(r"\s*([A-Za-z_][\w.]*:[A-Za-z_]\w*)\s*=\s*(none|-?[0-9]{1,9})\s*",
                   re.IGNORECASE)


def parse_orders(text: str) -> dict[str, int | None]:
    """Read ``module:Class=ORDER,...`` (``=none`` removes one); ``ValueError`` names the part."""
    orders: dict[str, int | None] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        match = _ITEM.fullmatch(part)
        if match is None:
            raise ValueError(f"{part.strip()!r} is not module:Class=ORDER or module:Class=none")
        orders[match[1]] = None if match[2].lower() == "none" else int(match[2])
    return orders


def normal_orders(text: str) -> str:
    """The setting's text in normal form (``ValueError`` if malformed), for ``voe settings``."""
    return ",".join(f"{path}={'none' if order is None else order}"
                    for path, order in parse_orders(text).items())


def load_class(path: str) -> type:
    """Import ``module:Class``; ``ImportError``, ``AttributeError`` or ``TypeError`` if not."""
    module, _, name = path.partition(":")
    found = getattr(importlib.import_module(module), name)
    if not isinstance(found, type):
        raise TypeError(f"{path} is not a class")
    return found


def ordered(base: Mapping[str, int], group: str | None, setting: str,
            broken: Callable[[str, str], None]) -> list[tuple[int, str, type | None]]:
    """The components to run as ``(order, module:Class, class)``, lowest order first.

    ``class`` is None for a built-in or a setting's class not imported yet (the caller
    imports it with ``load_class`` and decides what a failure means). An entry point
    that fails to load is passed to ``broken(path, why)`` and left out; ``group`` None
    skips entry points; one the setting turns off (``=none``) is not imported at all.
    ``ValueError`` when ``setting`` is malformed.
    """
    chosen: dict[str, tuple[int, type | None]] = {path: (order, None)
                                                  for path, order in base.items()}
    orders = parse_orders(setting)
    for entry_point in entry_points(group=group) if group else ():
        if entry_point.value in orders and orders[entry_point.value] is None:
            continue  # turned off by the setting: not even imported
        try:
            found = entry_point.load()
        except Exception as error:  # a plugin's import-time failure is the caller's to judge
            broken(entry_point.value, f"{type(error).__name__}: {error}")
            continue
        chosen[entry_point.value] = (int(getattr(found, "order", DEFAULT_ORDER)), found)
    for path, order in orders.items():
        if order is None:
            chosen.pop(path, None)
        else:
            chosen[path] = (order, chosen.get(path, (0, None))[1])
    return sorted(((order, path, found) for path, (order, found) in chosen.items()),
                  key=lambda entry: (entry[0], entry[1]))


def classes(base: Mapping[str, int], group: str | None, setting: str, kind: str,
            broken: Callable[[str, str], None]) -> list[tuple[int, str, type]]:
    """``ordered``'s components with every class imported, as ``(order, module:Class,
    class)``; a class named in ``setting`` that cannot be imported raises ``ValueError``
    (naming it as ``kind``), since the user asked for it."""
    chosen = []
    for order, path, found in ordered(base, group, setting, broken):
        if found is None:
            try:
                found = load_class(path)
            except (ImportError, AttributeError, TypeError) as error:
                raise ValueError(f"{kind} {path}: {error}") from None
        chosen.append((order, path, found))
    return chosen


def build(chosen: list[tuple[int, str, type]], factory: str, owner: object) -> list:
    """One instance of each chosen class: ``cls.<factory>(owner)`` when the class has that
    class method, else ``cls()``."""
    return [getattr(cls, factory)(owner) if hasattr(cls, factory) else cls()
            for _, _, cls in chosen]
