"""The report page as a person sees it: rendered by headless Chromium, the pictures load and the verdict shows.

Needs Debian's ``chromium`` (``.ci/run`` installs it). Without it the test skips, except under ``CI=true``, where it
fails: CI must prove that the page renders.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_results import clean_result, pixels_near, violated_result

from sessionkv.sim.report import TIMELINE_PICTURE, write_report

WINDOW = (1200, 2400)
TIMEOUT_S = 180.0
"""Generous: a cold Chromium start on a loaded two-core machine takes seconds; a hang still ends the test."""

BANNER = {"violated": (0xFF, 0xCC, 0xD5), "ok": (0xD8, 0xF3, 0xDC)}
"""The background colour of the verdict banner, per verdict (see the page's CSS)."""


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "headless Chromium not found (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must render the report page")
    pytest.skip(message)


def run_chromium(chromium: str, profile: Path, *arguments: str) -> str:
    """Run one headless Chromium command in its own process group (killed whole on timeout); return its stdout."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",  # let the page's load handler run before the dump or the screenshot
        *arguments,
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            out, err = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(command)}")
    assert process.returncode == 0, f"chromium exited {process.returncode}: {err[-2000:]}"
    return out


@pytest.mark.parametrize("make_result", [violated_result, clean_result], ids=["violated", "clean"])
def test_chromium_shows_both_pictures_and_the_verdict(
    tmp_path: Path, make_result: Callable[[], dict[str, Any]]
) -> None:
    chromium = find_chromium()
    result = make_result()
    index = write_report(result, tmp_path / "report")
    url = index.as_uri()

    dom = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    assert 'data-pictures="checked"' in dom, "the page's load handler did not run"
    images = re.findall(r"<img [^>]*>", dom)
    assert len(images) == 2
    for image in images:
        assert 'data-loaded="yes"' in image, image
        width = re.search(r'data-natural-width="(\d+)"', image)
        assert width is not None, image
        assert int(width.group(1)) > 0, image
    verdict = result["verdict"]
    assert re.search(rf'<p id="verdict" class="verdict {verdict}">verdict: <strong>{verdict.upper()}</strong>', dom)

    screenshot = tmp_path / "screenshot.png"
    run_chromium(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={screenshot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
        url,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the verdict banner is painted: a band of its colour at least a few lines tall across the page
    assert pixels_near(screenshot, BANNER[verdict]) > 20 * 500


def test_chromium_check_sees_a_missing_picture(tmp_path: Path) -> None:
    """The check above can fail: with a picture deleted, the page reports it, and says so in words."""
    chromium = find_chromium()
    index = write_report(clean_result(), tmp_path / "report")
    (tmp_path / "report" / TIMELINE_PICTURE).unlink()
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", index.as_uri())
    timeline = re.search(r'<img id="timeline" [^>]*>', dom)
    assert timeline is not None
    assert 'data-loaded="no"' in timeline.group(0)
    assert f"could not load {TIMELINE_PICTURE}" in dom
