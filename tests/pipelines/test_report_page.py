"""The replay report as a person sees it: rendered by headless Chromium.

The screenshot must show a page (text, tables) and the plots drawn in it, the forecasts
a day and a week ahead with their filled q10-q90 bands among them; a blank page, or one
whose images are broken, fails. Without Chromium the test is skipped with the
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
# The q10-q90 bands of the day-ahead (orange) and week-ahead (green) forecasts: their
# colours at a quarter's opacity on white. Nothing else on the page is drawn in them.
DAY_BAND = (255, 223, 196)
WEEK_BAND = (202, 231, 202)


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
    pixels = _screenshot(chromium, page, tmp_path / "report.png", 8000)
    ink = (pixels < 200).any(axis=2).mean()
    assert ink > 0.03, f"the page is nearly blank: {ink:.3%} of it is drawn"
    assert _share_of(pixels, TAB_BLUE) > 0.0008, "no plot shows: the images are broken or missing"
    assert _share_of(pixels, TAB_ORANGE) > 0.0004
    assert _share_of(pixels, DAY_BAND) > 0.001, "no filled day-ahead band"
    assert _share_of(pixels, WEEK_BAND) > 0.001, "no filled week-ahead band"


def test_a_broken_page_fails_the_same_check(
    chromium: str, replay_document: dict, tmp_path: Path
) -> None:
    page = write_report(replay_document, tmp_path / "report.html")
    broken = page.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA")
    page.write_text(broken)
    pixels = _screenshot(chromium, page, tmp_path / "broken.png", 8000)
    assert _share_of(pixels, TAB_BLUE) < 0.0001
    assert _share_of(pixels, WEEK_BAND) < 0.0001
