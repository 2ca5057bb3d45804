"""The overview page: per-minute traffic from this process's counters, drawn as SVG.

A `Sampler` reads the gateway's own metrics once a minute (events accepted, 429s,
deliveries by outcome, queue depth) into a day-long ring; the page charts the differences.
No query over the event table, so the page costs the same at 1 000 000 events as at ten.
The counters are this server process's (delivery workers report their outcomes to it);
they start at zero when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.http.console.pages import _gw, page, render
from gateway.observability.metrics import Metrics
from gateway.runtime import Gateway

INTERVAL = 60.0
SERIES = ("events", "rate_limited", "succeeded", "failed", "queue")


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    events: float
    rate_limited: float
    succeeded: float
    failed: float
    queue: float


def _total(metrics: Metrics, name: str, **match: str) -> float:
    return metrics.total(name, **match)


class Sampler:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.samples: deque[Sample] = deque(maxlen=24 * 60 + 1)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> Sample:
        m = self.gateway.metrics
        return Sample(
            at=time.time(),
            events=_total(m, "hookgate_events_total", outcome="202"),
            rate_limited=_total(m, "hookgate_rate_limited_total"),
            succeeded=_total(m, "hookgate_deliveries_total", outcome="succeeded"),
            failed=_total(m, "hookgate_deliveries_total", outcome="failed"),
            queue=float(self.gateway._pending_gauge),
        )

    async def _run(self) -> None:
        while True:
            self.samples.append(self.sample())
            await asyncio.sleep(INTERVAL)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="console-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def per_minute(self, seconds: float) -> dict[str, list[float]]:
        """Per-interval differences (queue: the level) over the last `seconds`, with the
        current values as the last point."""
        points = [s for s in self.samples if s.at >= time.time() - seconds] + [self.sample()]
        out: dict[str, list[float]] = {name: [] for name in SERIES}
        for prev, cur in itertools.pairwise(points):
            for name in SERIES[:-1]:
                out[name].append(max(0.0, getattr(cur, name) - getattr(prev, name)))
            out["queue"].append(cur.queue)
        return out


def svg_chart(series: dict[str, list[float]], title: str) -> str:
    """A small line chart as inline SVG markup (no script, no style attribute: CSP-safe)."""
    width, height, pad = 600, 160, 24
    values = [v for points in series.values() for v in points]
    top = max(values, default=0.0) or 1.0
    colours = {
        "events": "#2456c7",
        "rate_limited": "#c77d24",
        "succeeded": "#1d7a3a",
        "failed": "#b3261e",
        "queue": "#777777",
    }
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{title}" class="chart">',
        f"<title>{title}</title>",
        f'<line x1="{pad}" y1="{height - pad}" x2="{width}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="0" y="12" font-size="11" fill="#888">{top:g}</text>',
    ]
    for name, points in series.items():
        if not points:
            continue
        step = (width - pad) / max(1, len(points) - 1)
        coords = " ".join(
            f"{pad + i * step:.1f},{height - pad - v / top * (height - 2 * pad):.1f}"
            for i, v in enumerate(points)
        )
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colours[name]}" stroke-width="2"/>'
        )
    x = pad
    for name in series:
        parts.append(
            f'<rect x="{x}" y="{height - 12}" width="10" height="10" fill="{colours[name]}"/>'
        )
        parts.append(
            f'<text x="{x + 14}" y="{height - 3}" font-size="11" fill="#888">{name}</text>'
        )
        x += 100
    parts.append("</svg>")
    return "".join(parts)


@page
async def overview(request: Request) -> Response:
    gw = _gw(request)
    sampler: Sampler = request.app.state.sampler
    hour, day = sampler.per_minute(3600), sampler.per_minute(86400)
    targets = await gw.store.list_targets()
    return render(
        request,
        "overview.html",
        hour=svg_chart(hour, "last hour, per minute"),
        day=svg_chart(day, "last day, per minute"),
        now=sampler.sample(),
        rules=gw.rules,
        rule_errors=[str(e) for e in gw.rules.errors],
        disabled=[t for t in targets if t.status == "disabled"],
        failed=(await gw.store.failed_since(time.time() - 86400))[:50],
    )


routes = [Route("/", overview, methods=["GET"])]
