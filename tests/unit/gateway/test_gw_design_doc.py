"""docs/design.md is the reference: every config key and every cited section is in it."""

from __future__ import annotations

import dataclasses
import re

import harness

from gateway.config import Settings

DESIGN = harness.REPO / "docs" / "design.md"


def test_every_config_key_is_in_the_design_doc() -> None:
    text = DESIGN.read_text()
    missing = []
    for section in dataclasses.fields(Settings):
        block = re.search(rf"^\[{section.name}\]\n(.*?)(?=^\[|^```)", text, re.M | re.S)
        if block is None:
            missing.append(f"[{section.name}]")
            continue
        for key in dataclasses.fields(getattr(Settings(), section.name)):
            if not re.search(rf"^{key.name} = ", block.group(1), re.M):
                missing.append(f"{section.name}.{key.name}")
    assert missing == [], f"config keys missing from docs/design.md §9: {missing}"


def test_every_cited_section_exists() -> None:
    headings = set(re.findall(r"^## (\d+)\. ", DESIGN.read_text(), re.M))
    cited: set[tuple[str, str]] = set()
    for folder in ("gateway", "rules", "actions", "tests", "docs", "bench"):
        for path in (harness.REPO / folder).rglob("*"):
            if path.suffix in (".py", ".md") and path.is_file():
                for number in re.findall(r"docs/design\.md §(\d+)", path.read_text()):
                    cited.add((str(path.relative_to(harness.REPO)), number))
    assert cited, "no code cites docs/design.md"
    assert sorted(c for c in cited if c[1] not in headings) == []
    assert not [
        p
        for p in (harness.REPO / "gateway").rglob("*.py")
        if re.search(r"\bDESIGN §", p.read_text())
    ]
