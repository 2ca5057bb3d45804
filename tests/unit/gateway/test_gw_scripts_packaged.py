"""Scripts kept as files must ship in the wheel: a missing one only fails in production."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(180)
def test_every_script_file_is_in_the_built_wheel(tmp_path: Path) -> None:
    scripts = sorted(
        str(p.relative_to(ROOT))
        for pattern in ("*.lua", "*.sql")
        for p in (ROOT / "gateway").rglob(pattern)
    )
    assert scripts, "the gateway keeps its scripts as files"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("hookgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [s for s in scripts if s not in names] == []
