"""The replay report as a person sees it: rendered by headless Chromium.

The screenshot must show a page (text, tables) and the plots drawn in it; a blank page,
or one whose images are broken, fails. Without Chromium the test is skipped with the
reason, except under ``CI=true`` (``.ci/run`` installs it), where it fails (the
``chromium`` fixture).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from pipelines.report import write_report

# matplotlib's first two colours: every plot of the report draws in them.
TAB_BLUE = (31, 119, 180)
TAB_ORANGE = (255, 127, 14)


def _screenshot(chromium: str, page: Path, out: Path, height: int) -> np.ndarray:
    from matplotlib.image import imread

    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size=1200,{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = imread(out)[:, :, :3]
    return np.rint(pixels * 255).astype(np.int64)


def _share_of(pixels: np.ndarray, colour: tuple[int, int, int]) -> float:
    close = (np.abs(pixels - np.array(colour)) <= 12).all(axis=2)
    return float(close.mean())


def test_the_report_renders_as_a_page_with_its_plots(
    chromium: str, replay_document: dict, tmp_path: Path
) -> None:
    page = write_report(replay_document, tmp_path / "report.html")
    pixels = _screenshot(chromium, page, tmp_path / "report.png", 6000)
    ink = (pixels < 200).any(axis=2).mean()
    assert ink > 0.03, f"the page is nearly blank: {ink:.3%} of it is drawn"
    assert _share_of(pixels, TAB_BLUE) > 0.0008, "no plot shows: the images are broken or missing"
    assert _share_of(pixels, TAB_ORANGE) > 0.0004


def test_a_broken_page_fails_the_same_check(
    chromium: str, replay_document: dict, tmp_path: Path
) -> None:
    page = write_report(replay_document, tmp_path / "report.html")
    broken = page.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA")
    page.write_text(broken)
    pixels = _screenshot(chromium, page, tmp_path / "broken.png", 6000)
    assert _share_of(pixels, TAB_BLUE) < 0.0001
