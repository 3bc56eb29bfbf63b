"""Headers every response carries: no sniffing, no referrer, no framing; API answers uncached."""

from __future__ import annotations

from flask import Flask, Response, request

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Everything a page loads comes from this server; nothing inline may run.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def page_headers(response: Response) -> Response:
    """A strict content security policy on a page (a blueprint's after_request)."""
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    return response


def init_app(app: Flask) -> None:
    """Add the headers after every request, pages, API and errors alike."""

    @app.after_request
    def _secure_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        # Job data may be private to a token: no shared cache may keep it.
        if request.path.startswith("/api/") or request.path == "/metrics":
            response.headers.setdefault("Cache-Control", "no-store")
        return response
