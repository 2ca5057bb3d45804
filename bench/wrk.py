"""Run wrk with a fixed event body and parse what it reports."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

# A realistic ~300-byte inbound messaging event.
EVENT = {
    "event_type": "message.inbound",
    "id": "msg_8f2c1a9e4b7d",
    "conversation_id": "conv_51d0e7",
    "from": {"name": "Dana Whitfield", "phone": "+14155550123", "type": "customer"},
    "to": {"phone": "+14155550199"},
    "text": "Hi, can we move my appointment to Thursday at 3pm? Thanks!",
    "channel": "sms",
    "sent_at": "2026-11-23T10:15:00Z",
}
EVENT_BODY = orjson.dumps(EVENT)

SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  accepted = 0
  other = 0
end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
  end
  io.write(string.format("ACCEPTED %%d\\nOTHER %%d\\n", a, o))
end
"""

INSTALL_HINT = (
    "wrk is not installed. Install it with `sudo apt-get install wrk` (Debian/Ubuntu) or "
    "`brew install wrk` (macOS), then run `make bench` again."
)


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    accepted: int
    other: int


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run(
    url: str, workdir: Path, *, seconds: int, threads: int = 2, connections: int = 50
) -> WrkResult:
    script = workdir / "event.lua"
    script.write_text(SCRIPT % EVENT_BODY.decode())
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    accepted = int(re.search(r"ACCEPTED (\d+)", out).group(1))  # type: ignore[union-attr]
    other = int(re.search(r"OTHER (\d+)", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, accepted, other)
