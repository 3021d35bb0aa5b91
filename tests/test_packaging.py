"""The package asks for a torch range; the exact pin of our machines lives in constraints.txt."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_metadata_asks_for_a_torch_range(tmp_path: Path, monkeypatch) -> None:
    build_meta = pytest.importorskip("setuptools.build_meta")
    monkeypatch.chdir(ROOT)
    name = build_meta.prepare_metadata_for_build_wheel(str(tmp_path))
    text = (tmp_path / name / "METADATA").read_text()
    torch = [line for line in text.splitlines() if re.match(r"Requires-Dist: torch\b", line)]
    assert len(torch) == 1, torch
    assert "==" not in torch[0] and ">=" in torch[0], torch[0]
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    assert not any("torchvision" in line for line in requires)


def test_our_machines_pin_torch_through_the_constraints_file() -> None:
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", pins, re.M)
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs


def test_every_source_folder_ships_in_the_wheel() -> None:
    """``[tool.setuptools.packages.find]`` finds only folders with an ``__init__.py``: one
    without (``vaelens.study`` once was) would be missing from a non-editable install."""
    setuptools = pytest.importorskip("setuptools")
    src = ROOT / "src"
    found = set(setuptools.find_packages(str(src)))
    folders = {
        ".".join(d.relative_to(src).parts)
        for d in (src / "vaelens").rglob("*")
        if d.is_dir() and any(d.glob("*.py"))
    } | {"vaelens"}
    assert folders <= found, sorted(folders - found)
