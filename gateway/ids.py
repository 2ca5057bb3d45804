"""Record ids and event-URL tokens.

Ids come from `actions.ids` (sortable, unique, not secret); tokens are only ever stored hashed.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from actions.ids import id_floor, sortable_id

__all__ = ["hash_token", "id_floor", "is_id", "new_id", "new_token"]

new_id = sortable_id

_ID_BODY = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def is_id(value: str, prefix: str) -> bool:
    """Whether `value` has the shape of an id made by `new_id(prefix)`."""
    return value.startswith(prefix) and _ID_BODY.fullmatch(value, len(prefix)) is not None


def new_token() -> str:
    """An event-URL token: 192 random bits, URL-safe; the URL is the credential."""
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: the only form in which tokens are stored or compared."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
