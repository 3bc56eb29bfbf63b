"""Four named API tokens, one of each scope and two submitters, for tests of who may do what."""

from __future__ import annotations

from typing import Any

from flask import Flask

from service.tokens import digest
from tests.conftest import make_test_app

SECRETS = {"alice": "alice-secret", "bob": "bob-secret", "viewer": "viewer-secret", "ops": "ops"}
SCOPE_OF = {"alice": "submit", "bob": "submit", "viewer": "read", "ops": "admin"}
# As an operator configures them: only the digest of each secret is kept.
ENTRIES = tuple(
    f"{name}:{SCOPE_OF[name]}:sha256:{digest(secret).hex()}" for name, secret in SECRETS.items()
)
SWEEP = {"name": "s", "base": {"stage": "nn", "iterations": 5}, "grid": {"lr": [1e-6, 1e-5]}}


def bearer(name: str) -> dict[str, str]:
    """The Authorization header of one configured token."""
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def make_scoped_app(database_url: str, broker_url: str, **settings: Any) -> Flask:
    """The test app with the four tokens configured (plus any other settings)."""
    return make_test_app(database_url, broker_url, api_tokens=ENTRIES, **settings)
