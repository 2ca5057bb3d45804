"""`check_redis`: TLS options of `redis.url` the limiter cannot use are refused at start."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from harness import make_settings

from gateway.errors import ConfigError
from gateway.limits.redis_preflight import check_redis
from gateway.limits.resp import RespClient


def test_a_missing_ca_file_is_refused_before_start(tmp_path: Path) -> None:
    url = f"rediss://127.0.0.1:1/0?ssl_ca_certs={tmp_path / 'absent.pem'}"
    settings = make_settings(tmp_path, limits={"backend": "redis"}, redis={"url": url})
    with pytest.raises(ConfigError, match=r"^redis.url: cannot use its TLS options: "):
        check_redis(settings)


def test_an_unknown_cert_reqs_is_refused(tmp_path: Path) -> None:
    url = "rediss://127.0.0.1:1/0?ssl_cert_reqs=sometimes"
    settings = make_settings(tmp_path, storage={"backend": "redis"}, redis={"url": url})
    with pytest.raises(ConfigError, match="sometimes"):
        check_redis(settings)


def test_the_limiter_client_takes_the_url_tls_options() -> None:
    relaxed = RespClient("rediss://127.0.0.1:1/0?ssl_cert_reqs=none")._tls
    strict = RespClient("rediss://127.0.0.1:1/0")._tls
    plain = RespClient("redis://127.0.0.1:1/0")._tls
    assert relaxed is not None and relaxed.verify_mode == ssl.CERT_NONE
    assert not relaxed.check_hostname
    assert strict is not None and strict.verify_mode == ssl.CERT_REQUIRED
    assert strict.check_hostname
    assert plain is None
