"""Browser helper for the console tests: Debian's Chromium driven by Playwright.

Nothing is downloaded: Playwright launches `/usr/bin/chromium` (never `playwright
install`). Without a browser the tests skip with the reason, except under `CI=true`
where they fail. `shoot` writes docs/console/<name>.png when HOOKGATE_SCREENSHOTS is set
(`make screenshots`), so the docs show what the tests saw.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("HOOKGATE_TEST_CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "console"


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A fresh page in headless Chromium (laptop-sized viewport)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - dev extra not installed
        _unavailable(f"playwright is not installed: {exc}")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
        except Exception as exc:
            _unavailable(f"chromium at {CHROMIUM} did not start: {exc}")
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            yield context.new_page()
        finally:
            browser.close()


def _unavailable(reason: str) -> Any:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run under CI: {reason}")
    pytest.skip(reason)


def shoot(page: Any, name: str) -> None:
    """Save a full-page screenshot for docs/console.md when HOOKGATE_SCREENSHOTS is set."""
    if os.environ.get("HOOKGATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)
