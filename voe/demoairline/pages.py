"""HTML pages of the demo airline: the results page a scraper parses, and an error page.

Prices are shown the Brazilian way (``R$ 1.234,56``) so that backends have real
parsing to do; every piece of text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

from voe.demoairline.fares import AIRPORTS
from voe.model import Fare

_HEAD = """<!DOCTYPE html>
<html lang="pt-BR">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | Voe Demo Airlines</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; color: #1d2433; background: #f5f7fb; }}
header {{ background: #0b3d91; color: #fff; padding: 1rem 2rem; }}
header nav a {{ color: #cfe0ff; margin-right: 1rem; text-decoration: none; }}
main {{ max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; }}
th, td {{ padding: .5rem .75rem; border-bottom: 1px solid #e3e7ef; text-align: left; }}
td.price {{ font-weight: 600; white-space: nowrap; }}
.badge {{ font-size: .75rem; padding: .1rem .4rem; border-radius: .3rem; background: #e8f0ff; }}
footer {{ color: #6b7385; font-size: .8rem; text-align: center; padding: 2rem; }}
</style>
</head>
<body>
<header>
<a class="brand" href="/">Voe Demo Airlines</a>
<nav><a href="/">Início</a><a href="/search">Passagens</a><a href="/status">Status de voo</a>\
<a href="/help">Ajuda</a></nav>
</header>
"""

_FOOTER = """<footer>
<p>Voe Demo Airlines: a fictional airline for testing fare collectors. Prices in Brazilian reais,
taxes included. No real flights are sold here.</p>
</footer>
</body>
</html>
"""

_ROW = """<tr class="flight" data-flight="{code}">
<td class="carrier">{carrier}</td>
<td class="flight">{flight}</td>
<td class="departure">{departure}</td>
<td class="arrival">{arrival}</td>
<td class="stops"><span class="badge">Direto</span></td>
<td class="cabin">Econômica</td>
<td class="price">{price}</td>
<td class="select"><form method="post" action="/book"><input type="hidden" name="flight" \
value="{code}"><button type="submit">Selecionar</button></form></td>
</tr>
"""

_CARRIER_NAMES = {"G3": "Gol", "LA": "Latam", "AD": "Azul"}


def format_brl(price: str) -> str:
    """Format a decimal string such as ``"1234.56"`` as Brazilian money: ``R$ 1.234,56``."""
    amount = Decimal(price).quantize(Decimal("0.01"))
    text = f"{amount:,.2f}"  # 1,234.56
    return "R$ " + text.replace(",", "_").replace(".", ",").replace("_", ".")


def _city(code: str) -> str:
    return AIRPORTS.get(code, code)


def results_page(origin: str, destination: str, date: str, fares: Sequence[Fare]) -> str:
    """Render the results page of one search: a ``table#results`` with a ``tr.flight`` per fare."""
    route = f"{_city(origin)} ({origin}) → {_city(destination)} ({destination})"
    title = escape(f"{origin} → {destination} em {date}")
    parts = [_HEAD.format(title=title)]
    parts.append(
        f'<main>\n<h1>{escape(route)}</h1>\n'
        f'<p class="summary">{len(fares)} voos em <time datetime="{escape(date)}">'
        f"{escape(date)}</time></p>\n"
        '<table id="results">\n<thead>\n<tr><th>Companhia</th><th>Voo</th><th>Partida</th>'
        "<th>Chegada</th><th>Paradas</th><th>Cabine</th><th>Preço</th><th></th></tr>\n</thead>\n<tbody>\n"
    )
    for fare in fares:
        carrier = fare.flight.split(" ", 1)[0]
        parts.append(_ROW.format(
            code=escape(fare.flight),
            carrier=escape(_CARRIER_NAMES.get(carrier, carrier)),
            flight=escape(fare.flight),
            departure=escape(fare.departure),
            arrival=escape(fare.arrival),
            price=escape(format_brl(fare.price)),
        ))
    if not fares:
        parts.append('<tr class="empty"><td colspan="8">Nenhum voo encontrado.</td></tr>\n')
    parts.append("</tbody>\n</table>\n</main>\n")
    parts.append(_FOOTER)
    return "".join(parts)


def error_page(status: str, message: str) -> str:
    """Render a small HTML error page, e.g. for a path the airline does not serve."""
    return (
        _HEAD.format(title=escape(status))
        + f"<main>\n<h1>{escape(status)}</h1>\n<p class=\"error\">{escape(message)}</p>\n</main>\n"
        + _FOOTER
    )
