"""The end of ``creditx demo``: a day of the synthetic fleet through the live loop.

The API runs as ``creditx serve`` in a process of its own, on a free port, with the
accelerated clock given through its settings (``CREDITX_CLOCK_START``,
``CREDITX_CLOCK_SPEED``, ``CREDITX_CLOCK_ORIGIN``); the loop itself is
:func:`pipelines.live_day.run_live_day`.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from market.clock import AcceleratedClock
    from pipelines.demo import DemoOutcome
    from pipelines.live_day import ApiLaunch, LiveDayOutcome
    from serving.settings import Settings


def _free_port() -> int:
    # The user's own `creditx serve` may hold the default port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api_launch(settings: Settings, clock: AcceleratedClock, port: int) -> ApiLaunch:
    """Return how to start ``creditx serve`` on ``clock`` at ``port``, on the settings' stores."""
    from pipelines.live_day import ApiLaunch

    environment = {
        **os.environ,
        "CREDITX_HOME": str(settings.home.resolve()),
        "CREDITX_API_HOST": "127.0.0.1",
        "CREDITX_API_PORT": str(port),
        "CREDITX_CLOCK_START": clock.start.isoformat(),
        "CREDITX_CLOCK_SPEED": repr(clock.speed),
        "CREDITX_CLOCK_ORIGIN": clock.origin.isoformat(),
    }
    command = (sys.executable, "-m", "serving.cli", "serve", "--no-follow-champion")
    return ApiLaunch(command, environment, f"http://127.0.0.1:{port}")


def run_demo_live_day(
    settings: Settings, demo: DemoOutcome, speed: float, hours: int = 24
) -> LiveDayOutcome:
    """Play the demo fleet's last day (its last ``hours``) through the live loop against a
    fresh API process."""
    from pipelines.live_day import live_day_readings, run_live_day
    from serving.cli.pipeline import ensure_admin_token_file, issue_token
    from serving.tokens import TokenKind

    ensure_admin_token_file(settings)
    collector = issue_token(settings, TokenKind.COLLECTOR, "demo-collector")
    readings = live_day_readings(demo.fleet, demo.instances, hours)
    port = _free_port()
    typer.echo(
        f"live day: {len(demo.instances)} instances x {hours} h on an API clock at {speed:g}x "
        f"(about {hours * 3600 / speed:.0f} s)"
    )
    return run_live_day(
        readings,
        lambda clock: api_launch(settings, clock, port),
        collector_token=collector,
        token_file=settings.admin_token_file,
        speed=speed,
        log=settings.home / "live-day" / "api.log",
        say=typer.echo,
    )


def print_live_day(settings: Settings, live: LiveDayOutcome) -> None:
    """Print what the live day did and where to watch it."""
    done = sum(r.stage == "done" for r in live.rounds)
    typer.echo(
        f"Live day:   {live.day_start:%Y-%m-%d} UTC, {live.intervals} intervals: "
        f"{live.readings:,} readings posted, {live.accepted:,} accepted, {live.refused:,} "
        f"refused; {done} of {len(live.rounds)} market rounds done, {live.trades:,} trades; "
        f"allowances of {live.feed_instances} instances in the feed "
        f"({live.wall_seconds:.0f} s)"
    )
    home = f"CREDITX_HOME={settings.home.resolve()} .venv/bin/creditx"
    token = f"$(cat {settings.admin_token_file})"
    base = settings.base_url
    typer.echo(
        f"            the market-round runs and their tables: {home} prefect-ui, "
        "then Runs and Artifacts"
    )
    typer.echo(f"            with {home} serve running:")
    typer.echo(
        f'Allowances: curl -H "Authorization: Bearer {token}" "{base}/v1/admin/allowances?since=0"'
    )
    typer.echo(
        f'Rounds:     curl -H "Authorization: Bearer {token}" "{base}/v1/admin/market/rounds"'
    )
