"""Signing in to the pages: a token kept in an HttpOnly cookie that only the pages accept.

The API never reads the cookie (it takes Bearer tokens only), so another site cannot ride on
it to change anything; the pages' scripts send the token the sign-in form also left in the
browser's storage (static/api.js).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from service.api.headers import page_headers
from service.tokens import ApiToken, identify

COOKIE = "trainq_token"

bp = Blueprint("sign_in", __name__)
bp.after_request(page_headers)


def _tokens() -> tuple[ApiToken, ...]:
    return current_app.extensions["trainq.tokens"]


def local_path(target: str | None) -> str:
    """`target` when it is a path on this server, else "/": a sign-in never leads elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    # Browsers read a backslash as a slash ("/\\evil.example"), and no path holds controls.
    if parts.scheme or parts.netloc or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


def _signed_in_redirect(target: str) -> Response:
    return redirect(local_path(target), 303)


def require_sign_in() -> Response | None:
    """A page's before_request: with tokens on, a signed-in token, else 303 to the sign-in."""
    tokens = _tokens()
    if not tokens:
        return None
    secret = request.cookies.get(COOKIE, "")
    token = identify(tokens, secret) if secret else None
    if token is None:
        here = request.full_path if request.query_string else request.path
        return redirect(url_for("sign_in.sign_in_page", next=here), 303)
    # Every scope may read, so any configured token opens the pages.
    g.api_token = token
    return None


@bp.get("/sign-in")
def sign_in_page() -> Response | str:
    """The form that asks for a token."""
    target = local_path(request.args.get("next"))
    if not _tokens():
        return _signed_in_redirect(target)
    return render_template("sign_in.html", next=target, problem=None)


@bp.post("/sign-in")
def sign_in() -> Response | tuple[str, int]:
    """Check the posted token; keep it in the cookie and go on to the page asked for."""
    target = local_path(request.args.get("next"))
    if not _tokens():
        return _signed_in_redirect(target)
    secret = request.form.get("token", "").strip()
    if not secret or identify(_tokens(), secret) is None:
        problem = "token: that is not a token of this deployment."
        return render_template("sign_in.html", next=target, problem=problem), 401
    response = _signed_in_redirect(target)
    response.set_cookie(
        COOKIE, secret, httponly=True, samesite="Strict", secure=request.is_secure, path="/"
    )
    return response


@bp.post("/sign-out")
def sign_out() -> Response:
    """Forget the cookie (the page's script forgets the stored token)."""
    response = redirect(url_for("sign_in.sign_in_page"), 303)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="Strict", secure=request.is_secure
    )
    return response
