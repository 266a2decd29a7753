"""``creditx telemetry`` and ``creditx tokens issue --role collector``: a file posted over
real HTTP to the app served by uvicorn, the allowance read back from the store, and
refusals as one line with exit code 2."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import uvicorn
from serving_support import START
from typer.testing import CliRunner

from market.clock import ManualClock
from serving.cli import app as cli
from serving.main import create_app
from serving.services import build_services
from serving.settings import Settings
from serving.tables import api_tokens


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITX_")}
    env["CREDITX_HOME"] = str(home)
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The app on a real socket (uvicorn in a thread), its clock at START."""
    settings = Settings(home=tmp_path, rate_limit_per_second=1000.0, rate_limit_burst=1000)
    services = build_services(settings, ManualClock(START), champion=None)
    app = create_app(settings, ManualClock(START), services=services)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    services.close()


def test_a_collector_token_posts_a_file_and_the_allowance_reads_back(
    served: str, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    issued = CliRunner().invoke(
        cli, ["tokens", "issue", "--role", "collector", "--name", "rack-7"], env=env
    )
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.subject == "rack-7")).one()
    engine.dispose()
    assert row.kind == "collector"

    readings = tmp_path / "readings.csv"
    starts = [START - timedelta(minutes=15), START - timedelta(minutes=10)]
    pd.DataFrame(
        {
            "instance_id": ["vm-gold-1", "vm-gold-1", "vm-platinum-1"],
            "interval_start": [s.isoformat() for s in (*starts, starts[0])],
            "cpu_percent": [0.0, 10.0, 100.0],
        }
    ).to_csv(readings, index=False)
    posted = CliRunner().invoke(
        cli, ["telemetry", "post", str(readings), "--api", served, "--token", token], env=env
    )
    assert posted.exit_code == 0, posted.output
    assert "3 readings: 3 accepted, 0 duplicates, 0 refused" in posted.stdout
    assert posted.stdout.count("booked ") == 2

    again = CliRunner().invoke(
        cli, ["telemetry", "post", str(readings), "--api", served, "--token", token], env=env
    )
    assert "0 accepted, 3 duplicates" in again.stdout

    shown = CliRunner().invoke(cli, ["telemetry", "allowance", "vm-gold-1"], env=env)
    assert shown.exit_code == 0, shown.output
    # 4 vCPUs at gold's 20 %: 4 credits per interval earned; 0 % then 10 % (2 used)
    assert "6 vCPU-minutes, may burst" in shown.stdout
    platinum = CliRunner().invoke(cli, ["telemetry", "allowance", "vm-platinum-1"], env=env)
    assert "throttled to baseline" in platinum.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("instance_id,interval_start,cpu_percent\nvm-ghost,2026-11-24T14:00:00Z,1\n")
    refused = CliRunner().invoke(
        cli, ["telemetry", "post", str(bad), "--api", served, "--token", token], env=env
    )
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: 422 Invalid telemetry:")
    assert "unknown instance 'vm-ghost'" in refused.stderr

    agent = CliRunner().invoke(cli, ["tokens", "issue", "--instance", "vm-gold-1"], env=env)
    forbidden = CliRunner().invoke(
        cli,
        ["telemetry", "post", str(readings), "--api", served],
        env={**env, "CREDITX_COLLECTOR_TOKEN": agent.stdout.strip().splitlines()[-1]},
    )
    assert forbidden.exit_code == 2
    assert "403" in forbidden.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--role", "collector", "--instance", "vm-gold-1"], "exactly one"),
        (["--role", "agent"], "needs --instance"),
        (["--role", "root"], "not a role"),
    ],
)
def test_tokens_issue_refuses_a_bad_role(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["tokens", "issue", *arguments], env=_env(tmp_path))
    assert result.exit_code == 2
    assert message in result.output


def test_an_allowance_before_any_booking_is_one_error_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert CliRunner().invoke(cli, ["store", "init"], env=env).exit_code == 0
    result = CliRunner().invoke(cli, ["telemetry", "allowance", "vm-gold-1"], env=env)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: instance 'vm-gold-1' has no booked interval yet"
    unknown = CliRunner().invoke(cli, ["telemetry", "allowance", "vm-nowhere"], env=env)
    assert unknown.exit_code == 2
    assert "unknown instance 'vm-nowhere'" in unknown.stderr
