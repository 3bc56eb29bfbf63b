"""Headers every response carries: no sniffing, no referrer, no framing; API answers uncached."""

from __future__ import annotations

from flask import Flask, Response, request

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


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
