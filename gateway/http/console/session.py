"""Console sessions: an HMAC-signed cookie and the CSRF token derived from it.

The signing key lives in `data_dir/console_session_key` (mode 0600), so sessions survive a
restart and every worker process of one gateway accepts the same cookie. The cookie holds
only a random session id and an expiry, never the admin token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "hookgate_console"
LIFETIME_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    expires_at: float
    csrf: str


def load_key(data_dir: Path) -> bytes:
    """The session signing key kept in the data dir, created on first use."""
    path = data_dir / "console_session_key"
    if path.exists():
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


class SessionSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _session(self, session_id: str, expires_at: int) -> Session:
        return Session(session_id, float(expires_at), self._mac(f"csrf:{session_id}"))

    def new(self, now: float | None = None) -> tuple[Session, str]:
        """A new session and its cookie value."""
        expires = int((now if now is not None else time.time()) + LIFETIME_SECONDS)
        session_id = secrets.token_urlsafe(18)
        text = f"{session_id}.{expires}"
        return self._session(session_id, expires), f"{text}.{self._mac(text)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie value carries, or None when unsigned, forged or expired."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        session_id, expires, mac = parts
        if not hmac.compare_digest(mac, self._mac(f"{session_id}.{expires}")):
            return None
        if int(expires) <= (now if now is not None else time.time()):
            return None
        return self._session(session_id, int(expires))

    def csrf_ok(self, session: Session, supplied: str | None) -> bool:
        return bool(supplied) and hmac.compare_digest(session.csrf, supplied or "")
