"""``creditx mlflow-ui`` as a person uses it: the printed address, opened in Chromium.

A real MLflow SQLite store under a fresh ``CREDITX_HOME`` holds two training runs and
an evaluation run; the command serves the real MLflow UI on it and prints the address
of the training runs; headless Chromium renders that page. The runs table must show
the key metrics as columns and only the training runs. Without Chromium the test is
skipped with the reason, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.params import TrackingParams
from pipelines.runs_view import KEY_METRICS, TAG_KIND

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _store(home: Path) -> None:
    # The runs as the train and evaluate flows log them: a kind tag and their metrics.
    from mlflow.entities import Metric

    from pipelines.tracking import ensure_experiment

    tracking = TrackingParams(
        tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}",
        artifact_root=(home / "mlartifacts").resolve().as_uri(),
    )
    client = tracking.client()
    experiment_id = ensure_experiment(client, tracking)
    for name, kind, mase in (
        ("train-aaaa", "train", 0.8),
        ("train-bbbb", "train", 0.7),
        ("evaluate-cccc", "evaluate", 0.9),
    ):
        run = client.create_run(experiment_id, tags={TAG_KIND: kind}, run_name=name)
        metrics = {m: mase for m in KEY_METRICS}
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
        client.set_terminated(run.info.run_id)


def _headers_and_text(chromium: str, url: str) -> tuple[list[str], str]:
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            # Wide enough that the grid renders every column it has.
            "--window-size=3200,1200",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    headers = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
        for cell in re.findall(r'role="columnheader"[^>]*>(.*?)</div></div></div>', dom)
    ]
    return headers, html.unescape(re.sub(r"<[^>]+>", " ", dom))


def test_the_printed_address_opens_the_training_runs_with_their_key_metrics(
    chromium: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _store(home)
    port = _free_port()
    env = {**os.environ, "CREDITX_HOME": str(home)}
    ui = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "mlflow-ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert ui.stdout is not None
        url = None
        for line in ui.stdout:
            if line.startswith("MLflow UI: "):
                url = line.split()[2]
                break
        assert url is not None, "the command never printed the UI's address"
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        # The page loads its runs in the browser: give it a few tries on a busy machine.
        deadline = time.monotonic() + 120
        headers, text = _headers_and_text(chromium, url)
        while "train-aaaa" not in text and time.monotonic() < deadline:
            headers, text = _headers_and_text(chromium, url)
        missing = [m for m in ("Duration", *KEY_METRICS) if m not in headers]
        assert not missing, f"no column for {missing}; the table shows {headers}"
        assert "train-aaaa" in text
        assert "train-bbbb" in text
        assert "evaluate-cccc" not in text, "the view shows more than the training runs"
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
        if ui.stdout is not None:
            ui.stdout.close()
