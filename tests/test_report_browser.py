"""The report renders in headless Chromium: every image loads, no console messages.

Chromium comes from Debian's ``chromium`` package; when /usr/bin/chromium is missing the
test installs it (``apt-get update`` then ``apt-get install -y chromium``) and skips only if
that install fails, giving the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from report_fixtures import make_fake_study
from vaelens.report import build_report

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is missing and there is no apt-get to install it")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"installing chromium failed: {' '.join(cmd)}: {exc}")
        if res.returncode != 0:
            pytest.skip(f"installing chromium failed: {' '.join(cmd)}: {res.stderr[-500:]}")
    if not Path(CHROMIUM).is_file():
        pytest.skip("apt-get install chromium succeeded but /usr/bin/chromium is missing")
    return CHROMIUM


def _open(chromium: str, page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``page``; return the DOM after the load event and the page's console lines."""
    res = subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return res.stdout, console


def _images_ok(dom: str) -> tuple[int, int]:
    m = re.search(r'data-images-ok="(\d+)/(\d+)"', dom)
    assert m, "the page's load handler did not run"
    return int(m.group(1)), int(m.group(2))


def test_report_renders_with_every_image(chromium: str, tmp_path: Path) -> None:
    study = make_fake_study(tmp_path / "study", datasets=("dsprites",))
    page = build_report(study, n_boot=20)
    dom, console = _open(chromium, page, tmp_path / "profile")
    ok, total = _images_ok(dom)
    expected = int(re.search(r"data-images-total='(\d+)'", page.read_text()).group(1))
    assert total == expected > 5
    assert ok == total
    assert console == []
    assert "Comparison with Roy (2025)" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000


def test_the_check_catches_a_broken_page(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    from vaelens.report.html import CHECK_SCRIPT

    page.write_text(
        "<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA' alt='broken'>"
        "<script>throw new Error('boom');</script>" + CHECK_SCRIPT + "</body></html>"
    )
    dom, console = _open(chromium, page, tmp_path / "profile")
    assert _images_ok(dom) == (0, 1)
    assert any("Uncaught Error: boom" in line for line in console)
