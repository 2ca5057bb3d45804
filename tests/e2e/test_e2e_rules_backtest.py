"""Rule backtests over stored events: `POST /v1/rules/backtest` on every store backend and
`hookgate rules backtest` on SQLite. Counts, samples and rendered bodies come from events
posted through the real ingest route; the candidate rules point at a live sink that must
receive nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness
import orjson
import pytest

pytestmark = pytest.mark.e2e

CANDIDATE = """
[vars]
currency = "$"

[[rules]]
id = "thank-you"
event_types = ["job_completed"]
when = {{ "!!" = {{ var = "phone" }} }}
  [[rules.actions]]
  type = "webhook"
  url = "{url}"
  body = {{ to = {{ var = "phone" }}, text = {{ cat = [
    "Thanks ", {{ default = [{{ var = "name" }}, "there"] }}, ", total ",
    {{ var = "vars.currency" }}, {{ format_number = [{{ var = "total" }}, 2] }},
  ] }} }}

[[rules]]
id = "never"
event_types = ["no_such_type"]
  [[rules.actions]]
  type = "forward"
  url = "{url}"
"""


def _post_events(gateway: harness.Gateway) -> dict[str, list[str]]:
    """Ids by kind: 3 completed jobs with a phone (one per app 'other'), and the rest."""
    _, crm = gateway.create_app("crm", rate=1000, burst=1000)
    _, other = gateway.create_app("other", rate=1000, burst=1000)
    ids: dict[str, list[str]] = {"phone_crm": [], "phone_other": [], "rest": []}
    posts: list[tuple[str, str, dict[str, Any]]] = [
        ("phone_crm", crm, {"event_type": "job_completed", "phone": "+1555", "total": 1234.5}),
        ("phone_crm", crm, {"event_type": "job_completed", "phone": "+1556", "name": "Ada"}),
        ("rest", crm, {"event_type": "job_completed"}),
        ("rest", crm, {"event_type": "message.inbound", "phone": "+1557"}),
        ("phone_other", other, {"event_type": "job_completed", "phone": "+1558", "total": 2}),
    ]
    for kind, token, payload in posts:
        response = gateway.post_event(token, payload)
        assert response.status_code == 202, response.text
        ids[kind].append(response.json()["event_id"])
    return ids


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> harness.Settings:
    if request.param == "redis":
        redis = request.getfixturevalue("redis_url")
        return harness.make_settings(
            tmp_path,
            storage={"backend": "redis"},
            redis={"url": redis["url"], "key_prefix": redis["prefix"]},
        )
    return harness.make_settings(tmp_path, storage={"backend": request.param})


def test_backtest_api_counts_samples_and_renders_without_sending(
    store_settings: harness.Settings, tmp_path: Path, sink: harness.Sink
) -> None:
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "a.toml").write_text(CANDIDATE.format(url=sink.url()), encoding="utf-8")
    with harness.running_gateway(store_settings) as gateway:
        ids = _post_events(gateway)
        response = gateway.admin.post(
            "/v1/rules/backtest", json={"since": "1h", "dir": str(candidate)}
        )
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["events_scanned"] == 5
        tallies = {t["rule_id"]: t for t in report["rules"]}
        assert set(tallies) == {"thank-you", "never"}
        thanks = tallies["thank-you"]
        assert thanks["matched"] == 3
        assert set(thanks["sample_event_ids"]) == set(ids["phone_crm"] + ids["phone_other"])
        # Newest first: the first sample is the last event posted, from the app "other".
        assert thanks["sample_event_ids"][0] == ids["phone_other"][0]
        assert thanks["sample_body"] == {"to": "+1558", "text": "Thanks there, total $2.00"}
        assert tallies["never"] == {
            "rule_id": "never",
            "matched": 0,
            "sample_event_ids": [],
            "sample_body": None,
        }

        only_crm = gateway.admin.post(
            "/v1/rules/backtest", json={"since": "1h", "dir": str(candidate), "app": "crm"}
        ).json()
        crm_thanks = next(t for t in only_crm["rules"] if t["rule_id"] == "thank-you")
        assert (only_crm["events_scanned"], crm_thanks["matched"]) == (4, 2)
        assert crm_thanks["sample_event_ids"] == ids["phone_crm"][::-1]
        assert crm_thanks["sample_body"] == {"to": "+1556", "text": "Thanks Ada, total $"}

        past = gateway.admin.post(
            "/v1/rules/backtest",
            json={
                "since": "2020-01-01T00:00:00Z",
                "until": "2021-01-01T00:00:00Z",
                "dir": str(candidate),
            },
        ).json()
        assert past["events_scanned"] == 0

        time.sleep(0.5)  # a send, had one been made, would have reached the sink by now
        assert sink.received == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": 7}, "since"),
        ({"since": "2026-11-23T10:00:00"}, "since"),
        ({"since": "1h", "until": "soon"}, "until"),
        ({"since": "1h", "until": "2h"}, "until"),
        ({"since": "1h", "app": "nobody"}, "app"),
        ({"since": "1h", "app": 3}, "app"),
        ({"since": "1h", "dir": 3}, "dir"),
    ],
)
def test_backtest_api_bad_input_is_a_422_naming_the_field(
    gateway: harness.Gateway, body: dict[str, Any], field: str
) -> None:
    response = gateway.admin.post("/v1/rules/backtest", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_backtest_api_reports_rule_errors_of_the_candidate(
    gateway: harness.Gateway, tmp_path: Path
) -> None:
    candidate = tmp_path / "bad"
    candidate.mkdir()
    (candidate / "a.toml").write_text(
        '[[rules]]\nid = "r1"\nwhen = { var = "vars.missing" }\n'
        '  [[rules.actions]]\n  type = "webhook"\n  url = "http://127.0.0.1:9/h"\n',
        encoding="utf-8",
    )
    response = gateway.admin.post("/v1/rules/backtest", json={"since": "1d", "dir": str(candidate)})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["rule_id"] == "r1" and 'unknown var "vars.missing"' in error["message"]
    missing = gateway.admin.post(
        "/v1/rules/backtest", json={"since": "1d", "dir": str(tmp_path / "nowhere")}
    )
    assert missing.status_code == 422 and missing.json()["error"] == "invalid_rules"


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "HOOKGATE_STORAGE_DATA_DIR": str(tmp / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rules", "backtest", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_backtest_cli_on_sqlite(tmp_path: Path, sink: harness.Sink) -> None:
    settings = harness.make_settings(tmp_path)
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "a.toml").write_text(CANDIDATE.format(url=sink.url()), encoding="utf-8")
    with harness.running_gateway(settings) as gateway:
        ids = _post_events(gateway)
    result = _cli(tmp_path, "candidate", "--since", "7d", "--app", "crm", "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    thanks = next(t for t in report["rules"] if t["rule_id"] == "thank-you")
    assert (report["events_scanned"], report["app"]) == (4, "crm")
    assert thanks["sample_event_ids"] == ids["phone_crm"][::-1]

    text = _cli(tmp_path, "candidate", "--since", "1h")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("5 events scanned in ")
    assert "(nothing sent)" in text.stdout
    row = next(line for line in text.stdout.splitlines() if line.startswith("thank-you "))
    assert row.split()[1] == "3"
    assert 'thank-you: {"to":"+1558","text":"Thanks there, total $2.00"}' in text.stdout

    bad = _cli(tmp_path, "candidate", "--since", "last week")
    assert bad.returncode == 2 and "--since: expected a duration" in bad.stderr
    assert sink.received == []


def test_backtest_needs_the_admin_token(gateway: harness.Gateway) -> None:
    response = gateway.public.post("/v1/rules/backtest", json={"since": "1h"})
    assert response.status_code == 401
