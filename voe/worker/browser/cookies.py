"""An identity's cookies into a browser context and back.

An identity (``voe.worker.fetch.identities``) keeps its cookies in a ``http.cookiejar``
jar, as the HTTP backends' requests do; a browser context takes and gives
Playwright's cookie objects. A render starts with the identity's cookies and ends
with the context's filed back into the identity's jar, so consent and session
cookies live as long as the identity, and never reach another one.
"""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any

from requests.cookies import create_cookie


def to_browser(jar: CookieJar) -> list[dict[str, Any]]:
    """The cookies of ``jar`` as Playwright's cookie objects."""
    cookies = []
    for cookie in jar:
        if cookie.value is None or not cookie.domain:
            continue
        entry: dict[str, Any] = {"name": cookie.name, "value": cookie.value,
                                 "domain": cookie.domain, "path": cookie.path or "/",
                                 "secure": bool(cookie.secure)}
        if cookie.expires is not None:
            entry["expires"] = float(cookie.expires)
        cookies.append(entry)
    return cookies


def from_browser(jar: CookieJar, cookies: list[dict[str, Any]]) -> None:
    """File Playwright's ``cookies`` into ``jar`` (the same name, domain and path replaced)."""
    for cookie in cookies:
        expires = cookie.get("expires")
        jar.set_cookie(create_cookie(
            cookie["name"], cookie["value"], domain=cookie.get("domain", ""),
            path=cookie.get("path", "/"), secure=bool(cookie.get("secure")),
            expires=None if expires is None or expires < 0 else int(expires),
            rest={"HttpOnly": None} if cookie.get("httpOnly") else {}))
