"""Record ids and event-URL tokens.

Ids come from `actions.ids` (sortable, unguessable); tokens are only ever stored hashed.
"""

from __future__ import annotations

import hashlib
import secrets

from actions.ids import id_floor, sortable_id

__all__ = ["hash_token", "id_floor", "new_id", "new_token"]

new_id = sortable_id


def new_token() -> str:
    """An event-URL token: 192 random bits, URL-safe; the URL is the credential."""
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: the only form in which tokens are stored or compared."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
