"""Every Redis key name hookgate uses, in one place.

Rate-limit keys share one hash tag (`{<prefix>rl}`) so the Lua script that touches an app
bucket and the global bucket together stays in one Redis Cluster slot.
"""

from __future__ import annotations


def bucket_tag(prefix: str) -> str:
    return "{" + prefix + "rl}"


def app_bucket(prefix: str, app_key: str) -> str:
    return f"{bucket_tag(prefix)}:app:{app_key}"


def global_bucket(prefix: str) -> str:
    return f"{bucket_tag(prefix)}:global"


def guard_prefix(prefix: str) -> str:
    """Prefix for the `limits` moving windows that guard against token guessing."""
    return f"{prefix}guard"
