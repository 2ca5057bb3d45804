"""What `hookgate serve` and `hookgate worker` check about `redis.url` before they start.

The store, the guessing guard and the rate limiter all use `redis.url`, through three
clients (redis-py, limits, `gateway.limits.resp`). Two ways one URL could work for some and not
others are refused here, in one sentence, instead of surfacing later as a store error or
as every bucket check failing open:

- TLS options the limiter's client could not use (a certificate file that is missing, an
  unknown `ssl_cert_reqs`): the context is built now, as the limiter will build it.
- A Redis Cluster node (`cluster_enabled:1`): the store keeps every key under one hash tag
  and the limiter and guard send plain commands, so on a cluster some calls would get
  MOVED; hookgate needs a standalone Redis (with replicas or Sentinel-managed failover).
"""

from __future__ import annotations

import redis
from redis.connection import SSLConnection, parse_url

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.limits.resp import tls_context

CONNECT_TIMEOUT = 2.0


def uses_redis(settings: Settings) -> bool:
    return settings.storage.backend == "redis" or settings.limits.backend == "redis"


def check_redis(settings: Settings) -> None:
    """Raise ConfigError when `redis.url` cannot serve every client hookgate runs on it.

    A Redis that does not answer is not refused here: the limiter then fails open or
    closed as configured, and the store reports its own error at start."""
    if not uses_redis(settings):
        return
    url = settings.redis.url
    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]
        if options.get("connection_class") is SSLConnection:
            tls_context(options)
    except (ValueError, OSError, redis.RedisError) as exc:
        raise ConfigError(f"redis.url: cannot use its TLS options: {exc}") from None
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        info = client.info("cluster")
    except redis.ResponseError:  # INFO renamed or disabled (managed services): not a cluster
        return
    except redis.RedisError:
        return
    finally:
        client.close()
    if int(info.get("cluster_enabled", 0) or 0):
        raise ConfigError(
            "redis.url points at a Redis Cluster node (cluster_enabled:1); hookgate needs a "
            "standalone Redis (replicas and Sentinel failover are fine): not starting"
        )
