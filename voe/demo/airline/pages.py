"""HTML pages of the demo airline: results pages (classic, redesigned) and errors.

The JavaScript page is ``voe.demo.airline.jspage``.

Prices are shown the Brazilian way (``R$ 1.234,56``) so that backends have real
parsing to do; every piece of text is escaped. ``sloppy`` turns a page into the
careless but readable markup real sites send (the "malformed" fault).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from html import escape

from voe.demo.airline.fares import AIRPORTS
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


def framed(title: str, main: str) -> str:
    """A whole page of the airline's site: its head (``title``, escaped here), ``main`` (the
    page's own markup) and its footer."""
    return _HEAD.format(title=escape(title)) + main + _FOOTER


def format_brl(price: str) -> str:
    """Format a decimal string such as ``"1234.56"`` as Brazilian money: ``R$ 1.234,56``."""
    amount = Decimal(price).quantize(Decimal("0.01"))
    text = f"{amount:,.2f}"  # 1,234.56
    return "R$ " + text.replace(",", "_").replace(".", ",").replace("_", ".")


def city(code: str) -> str:
    """The city of an airport code, or the code itself when the airline does not know it."""
    return AIRPORTS.get(code, code)


def results_page(origin: str, destination: str, date: str, fares: Sequence[Fare]) -> str:
    """Render the results page of one search: a ``table#results`` with a ``tr.flight`` per fare."""
    route = f"{city(origin)} ({origin}) → {city(destination)} ({destination})"
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


_SOFT_BLOCK_BANNER = """<div class="alert" role="alert"><strong>Acesso temporariamente \
bloqueado.</strong> Detectamos muitas requisições vindas da sua rede; tente novamente mais \
tarde.</div>
"""


def soft_block_page(origin: str, destination: str, date: str) -> str:
    """Render the "soft block": the normal results page with no flights ("0 voos") and a
    banner saying access is blocked for now. Read without care, it is a search without
    flights; it is a block (see the demo backend's ``block_markers``)."""
    return results_page(origin, destination, date, []).replace(
        "<main>\n", f"<main>\n{_SOFT_BLOCK_BANNER}", 1)


def block_page() -> str:
    """Render the page of a hard block (sent with 403), as a web application firewall does."""
    return error_page("403 Forbidden", "Acesso negado. Sua solicitação foi bloqueada por "
                      "motivos de segurança (access denied).")


def captcha_page(resume: str) -> str:
    """Render the captcha page a blocked search is redirected to; ``resume`` is where it was
    going (the page offers to resume there once solved, as real ones do)."""
    return (
        _HEAD.format(title="Verificação de segurança")
        + '<main>\n<h1>Verificação de segurança</h1>\n'
        '<p>Confirme que você não é um robô para continuar.</p>\n'
        '<form method="post" action="/captcha"><div class="captcha" data-sitekey="demo">'
        '</div>\n'
        f'<input type="hidden" name="continue" value="{escape(resume)}">\n'
        '<button type="submit">Continuar</button></form>\n</main>\n'
        + _FOOTER
    )


_OFFER = """<article class="offer" data-offer="{code}">
<h3 class="offer-title"><span class="airline">{carrier}</span>
<span class="code">{flight}</span></h3>
<div class="offer-times"><time class="from">{departure}</time> →
<time class="to">{arrival}</time></div>
<div class="offer-price"><span class="currency">R$</span> <span class="amount">{amount}</span></div>
<a class="offer-select" href="/book?flight={code}">Selecionar</a>
</article>
"""


def new_layout_page(origin: str, destination: str, date: str, fares: Sequence[Fare]) -> str:
    """Render the redesigned results page: cards instead of ``table#results`` (the "new layout").

    It carries the same fares; a scraper written for the classic page does not find them.
    """
    route = f"{city(origin)} ({origin}) → {city(destination)} ({destination})"
    parts = [_HEAD.format(title=escape(f"{origin} → {destination} em {date}"))]
    parts.append(f'<main class="v2">\n<h1>{escape(route)}</h1>\n'
                 f'<div class="offers-count" data-count="{len(fares)}">{len(fares)} ofertas</div>\n'
                 '<section id="offers">\n')
    for fare in fares:
        carrier = fare.flight.split(" ", 1)[0]
        parts.append(_OFFER.format(
            code=escape(fare.flight), carrier=escape(_CARRIER_NAMES.get(carrier, carrier)),
            flight=escape(fare.flight), departure=escape(fare.departure),
            arrival=escape(fare.arrival), amount=escape(format_brl(fare.price)[3:]),
        ))
    parts.append("</section>\n</main>\n")
    parts.append(_FOOTER)
    return "".join(parts)


_OPTIONAL_END_TAGS = re.compile(r"</(td|th|tr|tbody|thead|p)>")
_QUOTED_ATTRIBUTE = re.compile(r'(\s[a-z-]+)="([a-z0-9-]+)"')
_TAG_NAME = re.compile(r"<(/?)(table|tr|td|th|tbody|thead|p|main|h1)\b")


def sloppy(page: str) -> str:
    """Rewrite a results page the careless way real sites do, keeping every fare readable.

    Optional end tags are dropped, simple attribute values lose their quotes, tag
    names are upper-cased, ``&nbsp`` loses its semicolon and stray end tags appear.
    """
    page = _OPTIONAL_END_TAGS.sub("", page)
    page = _QUOTED_ATTRIBUTE.sub(r"\1=\2", page)
    page = _TAG_NAME.sub(lambda match: f"<{match[1]}{match[2].upper()}", page)
    page = page.replace("<TR class=flight", "</span></div><TR class=flight")
    return page.replace("R$ ", "R$&nbsp")
