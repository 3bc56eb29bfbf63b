"""API tokens: a name, a scope and the SHA-256 of the secret, never the secret itself."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

# Each scope can do what the ones before it can.
SCOPES = ("read", "submit", "admin")
# name:scope:sha256:<64 hex digits>, as `trainq token new` prints it.
HASHED_ENTRY = re.compile(r"^([A-Za-z0-9_.@-]{1,64}):(read|submit|admin):sha256:([0-9a-fA-F]{64})$")


class TokenConfigError(ValueError):
    """A TRAINQ_API_TOKENS entry that is neither a hashed entry nor a plain token."""


@dataclass(frozen=True)
class ApiToken:
    """One configured token: who it is, what it may do, and the digest of its secret."""

    name: str
    scope: str
    digest: bytes

    def allows(self, needed: str) -> bool:
        """Whether this token's scope covers the scope an operation needs."""
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


def digest(secret: str) -> bytes:
    """The SHA-256 of a secret as it is compared."""
    return hashlib.sha256(secret.encode()).digest()


def parse_entry(entry: str) -> ApiToken:
    """A configured entry: `name:scope:sha256:HEX`, or (the old form) a plain admin token."""
    entry = entry.strip()
    if not entry:
        raise TokenConfigError("an empty token entry")
    match = HASHED_ENTRY.match(entry)
    if match:
        name, scope, hex_digest = match.groups()
        return ApiToken(name, scope, bytes.fromhex(hex_digest))
    if entry.count(":") >= 2 and ":sha256:" in entry:
        raise TokenConfigError(f"not name:read|submit|admin:sha256:<64 hex>: {entry.split(':')[0]}")
    # A plain token of a deployment from before scopes: admin, named by its digest's prefix
    # so the name is stable and says nothing usable about the secret.
    hashed = digest(entry)
    return ApiToken(f"token-{hashed.hex()[:8]}", "admin", hashed)


def parse_tokens(entries: tuple[str, ...]) -> tuple[ApiToken, ...]:
    """Every configured token; names must be unique, since they become owners."""
    tokens = tuple(parse_entry(entry) for entry in entries)
    names = [token.name for token in tokens]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TokenConfigError(f"token names must be unique: {duplicates}")
    return tokens


def identify(tokens: tuple[ApiToken, ...], secret: str) -> ApiToken | None:
    """The token whose digest matches, compared against every one in constant time."""
    given = digest(secret)
    found: ApiToken | None = None
    for token in tokens:
        if hmac.compare_digest(given, token.digest):
            found = token
    return found


def new_token(name: str, scope: str) -> tuple[str, str]:
    """A fresh random secret and the TRAINQ_API_TOKENS entry that stores only its digest."""
    if scope not in SCOPES:
        raise TokenConfigError(f"scope must be one of {SCOPES}")
    secret = secrets.token_urlsafe(32)
    entry = f"{name}:{scope}:sha256:{digest(secret).hex()}"
    if not HASHED_ENTRY.match(entry):
        raise TokenConfigError("a name is 1 to 64 of A-Z a-z 0-9 _ . @ -")
    return secret, entry
