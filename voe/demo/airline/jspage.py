"""The demo airline's JavaScript page (``/js/search``), built like a real airline's.

The markup holds no fares. Like airline sites built as JavaScript applications, the
page pulls stylesheets, scripts, images and a web font from the airline itself
(``/static/...``, ``js-assets`` of them, a few dozen by default), and once loaded its
script asks the airline's JSON endpoint (``/js/fares``, the payload of
``/api/search``) for the fares by ``fetch`` and builds ``table#results``. So a
reader must run the page, and blocking what a fare page does not need (images,
fonts) and waiting for the table rather than for a fixed time both matter.

The consent wall (the ``consent-wall-rate`` fault): the page shows only a cookie
banner until the visitor accepts; its button asks ``/consent``, which sets the
``voe_consent`` cookie, and reloads the page, which then renders as usual.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import urlencode

from voe.demo.airline.pages import _FOOTER, _HEAD, city

# The cookie of an accepted consent wall, and its value.
CONSENT_COOKIE = "voe_consent"
CONSENT_VALUE = "yes"
# Kinds of sub-resources and the share of the page's assets each takes (the rest: images).
_KINDS = (("css", 0.25), ("js", 0.25))
_FONT = "/static/font/brand.woff2"

_SHELL = """<main>
<h1>{route}</h1>
<div id="app"><p class="loading">Carregando voos…</p></div>
{images}
</main>
<script type="application/json" id="fares-data">{config}</script>
<script>
(function () {{
  "use strict";
  function brl(price) {{
    var parts = price.split(".");
    var units = parts[0].replace(/\\B(?=(\\d{{3}})+(?!\\d))/g, ".");
    return "R$ " + units + "," + ((parts[1] || "") + "00").slice(0, 2);
  }}
  function cell(row, name, text) {{
    var td = document.createElement("td");
    td.className = name;
    td.textContent = text;
    row.appendChild(td);
  }}
  function render(search, fares) {{
    var app = document.getElementById("app");
    var summary = document.createElement("p");
    summary.className = "summary";
    summary.textContent = fares.length + " voos em " + search.date;
    var table = document.createElement("table");
    table.id = "results";
    var body = document.createElement("tbody");
    fares.forEach(function (fare) {{
      var row = document.createElement("tr");
      row.className = "flight";
      cell(row, "flight", fare.flight);
      cell(row, "departure", fare.departure);
      cell(row, "arrival", fare.arrival);
      cell(row, "price", brl(fare.price));
      body.appendChild(row);
    }});
    table.appendChild(body);
    app.replaceChildren(summary, table);
  }}
  function failed(message) {{
    var error = document.createElement("p");
    error.className = "error";
    error.textContent = "Não foi possível carregar os voos: " + message;
    document.getElementById("app").replaceChildren(error);
  }}
  var config = JSON.parse(document.getElementById("fares-data").textContent);
  window.addEventListener("load", function () {{
    fetch(config.api, {{credentials: "same-origin"}}).then(function (answer) {{
      if (!answer.ok) {{ throw new Error("HTTP " + answer.status); }}
      return answer.json();
    }}).then(function (payload) {{
      render(payload.search, payload.fares);
    }}).catch(function (error) {{ failed(String(error.message || error)); }});
  }});
}})();
</script>
"""

_CONSENT = """<main>
<h1>{route}</h1>
<div id="consent" role="dialog" aria-label="Cookies">
<p>Usamos cookies para mostrar as tarifas. Aceite para continuar.</p>
<button id="consent-accept" type="button">Aceitar cookies</button>
</div>
</main>
<script>
document.getElementById("consent-accept").addEventListener("click", function () {{
  fetch("/consent", {{credentials: "same-origin"}}).then(function () {{ location.reload(); }});
}});
</script>
"""


def asset_paths(count: int) -> list[str]:
    """The ``count`` sub-resources of the page (stylesheets, scripts, images; one font)."""
    paths = [_FONT] if count else []
    for kind, share in _KINDS:
        paths += [f"/static/{kind}/{kind}{index}.{kind}"
                  for index in range(max(1, round(count * share)) if count else 0)]
    paths += [f"/static/img/img{index}.png" for index in range(max(0, count - len(paths)))]
    return paths[:count]


def _head_links(paths: list[str]) -> str:
    links = [f'<link rel="stylesheet" href="{path}">' for path in paths
             if path.endswith(".css")]
    links += [f'<script src="{path}" defer></script>' for path in paths if path.endswith(".js")]
    return "\n".join(links)


def js_results_page(origin: str, destination: str, date: str, assets: int) -> str:
    """The ``demo-js`` page of one search: ``assets`` sub-resources, fares loaded by ``fetch``."""
    route = f"{city(origin)} ({origin}) → {city(destination)} ({destination})"
    paths = asset_paths(assets)
    images = "\n".join(f'<img src="{path}" alt="" width="16" height="16">' for path in paths
                       if path.endswith(".png"))
    query = urlencode({"origin": origin, "destination": destination, "date": date})
    config = json.dumps({"api": f"/js/fares?{query}"}).replace("</", "<\\/")
    head = _HEAD.format(title=escape(f"{origin} → {destination} em {date}"))
    head = head.replace("</head>", f"{_head_links(paths)}\n</head>", 1)
    return head + _SHELL.format(route=escape(route), images=images, config=config) + _FOOTER


def consent_page(origin: str, destination: str) -> str:
    """The consent wall in place of the page: a cookie banner and its accept button."""
    route = f"{city(origin)} ({origin}) → {city(destination)} ({destination})"
    return (_HEAD.format(title="Cookies | " + escape(f"{origin} → {destination}"))
            + _CONSENT.format(route=escape(route)) + _FOOTER)


def asset(path: str) -> tuple[str, bytes] | None:
    """The content type and body of a sub-resource at ``path`` (None: no such asset)."""
    name = path.rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0]
    if path == _FONT:
        return "font/woff2", b"wOF2" + bytes(range(256)) * 16
    if path.startswith("/static/css/") and name.endswith(".css"):
        rule = (f"@font-face {{ font-family: brand; src: url({_FONT}); }}\n"
                if stem == "css0" else "")
        return "text/css", (rule + f".{stem} {{ margin: 0; padding: 0; }}\n" * 40).encode()
    if path.startswith("/static/js/") and name.endswith(".js"):
        body = (f"window.voeModules = (window.voeModules || 0) + 1;\n"
                f"function {stem}Widget(node) {{ return node && node.dataset; }}\n" * 20)
        return "application/javascript", body.encode()
    if path.startswith("/static/img/") and name.endswith(".png"):
        return "image/png", _PNG + stem.encode() * 200
    return None


# A 1x1 PNG; the bytes after its IEND make each image a few KB, as photos and icons are.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def has_consent(cookie_header: str) -> bool:
    """Whether a request's Cookie header carries the accepted consent."""
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == CONSENT_COOKIE and value == CONSENT_VALUE:
            return True
    return False
