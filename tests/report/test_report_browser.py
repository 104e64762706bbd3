"""The report opens in a real browser: headless Chromium loads report.html from disk, the
DOM has the tables and inline images, and a screenshot shows the plots and thumbnails.

Setup: uses ``chromium`` from PATH; if it is missing and we are root with apt-get, runs
``apt-get update`` and ``apt-get install -y chromium`` (Debian) once per session. If that
is impossible the tests skip, printing why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def _install() -> str | None:
    """Try to install Debian's chromium; return why it failed, or None."""
    if shutil.which("apt-get") is None:
        return "chromium is not installed and apt-get is not available"
    if os.geteuid() != 0:
        return "chromium is not installed and we are not root (cannot apt-get install it)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{' '.join(cmd)} failed: {err}"
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = _install()
        found = shutil.which("chromium")
        if found is None:
            reason = f"browser test skipped: {reason or 'chromium not found after install'}"
            print(reason)
            pytest.skip(reason)
    return found


def _run(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([chromium, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))


def test_dom_has_tables_and_inline_images(chromium, built_report, tmp_path):
    done = _run(chromium, tmp_path, "--dump-dom", built_report["html"].resolve().as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    assert dom.tags.get("table", 0) >= 2 and dom.tags.get("tr", 0) >= 7
    assert len(dom.images) >= 10 and all(s.startswith("data:image/png;base64,") for s in dom.images)
    assert "full beats LoRA r=16" in done.stdout


def test_screenshot_shows_plots_and_thumbnails(chromium, built_report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    done = _run(chromium, tmp_path, "--window-size=1280,3200", f"--screenshot={shot}",
                built_report["html"].resolve().as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 3200)
    colors = img.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200, "screenshot is (nearly) blank"
    counts = {rgb: n for n, rgb in colors}

    def near(target: tuple[int, int, int], tol: int = 12) -> int:
        return sum(n for rgb, n in counts.items() if all(abs(a - b) <= tol for a, b in zip(rgb, target)))

    assert near((220, 30, 30)) > 500, "no thumbnail (red circles) visible"
    assert near((31, 119, 180)) > 100, "no plot colours visible"
