"""Cross-site requests: a browser on another site may not change anything here.

Without tokens (make run's default) a page on any site could otherwise post a form to the API;
with cookies on the pages, it could sign someone out. Browsers name where a request comes from in
Sec-Fetch-Site and Origin; clients that send neither (curl, the CLI) are not browsers and pass.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request

from service.api.extensions import ApiError

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def same_origin(origin: str, host: str) -> bool:
    """Whether an Origin header names this server (its host and port, as the Host header says)."""
    # Scheme is not compared: behind a TLS-terminating proxy the request arrives as http.
    parts = urlsplit(origin)
    return bool(parts.scheme and parts.netloc) and parts.netloc.lower() == host.lower()


def from_elsewhere(site: str, origin: str | None, host: str) -> bool:
    """Whether a browser says this request comes from a page on another site."""
    if site == "cross-site":
        return True
    if origin is None:
        return False
    if origin == "null":
        # Our pages' own posts say "null" too (Referrer-Policy: no-referrer hides their origin):
        # then only the browser's Sec-Fetch-Site can vouch for them.
        return site != "same-origin"
    return not same_origin(origin, host)


def refuse_cross_site() -> None:
    """403 cross_site for a state-changing request a browser sent from another site."""
    if request.method not in STATE_CHANGING:
        return
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    origin = request.headers.get("Origin")
    if from_elsewhere(site, origin, request.host):
        raise ApiError(
            403,
            "cross_site",
            f"{request.method} from another site ({origin or 'Sec-Fetch-Site: cross-site'})"
            " is refused: send it from this server's own pages or from a non-browser client",
            "Origin",
        )


def init_app(app: Flask) -> None:
    """Check every request, API and pages alike, before anything else reads it."""
    app.before_request(refuse_cross_site)
