"""Ingest tells the delivery workers' load monitor it is busy (issue 11): delivery yields to
ingest only while ingest answers requests, so a request that did not count would let a
backlog drain take the server's CPU from a burst of events."""

from __future__ import annotations

from pathlib import Path

import harness
import pytest

pytestmark = pytest.mark.e2e


def test_every_ingest_request_counts_as_an_arrival_for_the_load_monitor(tmp_path: Path) -> None:
    settings = harness.make_settings(tmp_path, delivery={"workers": 1})
    with harness.running_gateway(settings) as gateway:
        _, token = gateway.create_app("acme")
        workers = gateway.gw.workers
        assert workers is not None
        before = workers.load.arrivals
        for n in range(3):
            assert gateway.post_event(token, {"n": n}).status_code == 202
        assert gateway.post_event("not-a-token", {}).status_code == 404
        assert workers.load.arrivals - before == 4
