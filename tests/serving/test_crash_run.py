"""The short version of ``creditx bench crash``: the real server (``creditx serve`` in a
child process) under trading agents, SIGKILLed and restarted, on SQLite and PostgreSQL.
The long randomized run is the benchmark's (``creditx bench crash --kills N``)."""

from __future__ import annotations

import pytest

from benchmarks.crash import run_crash


def _check(kills: int, **options: str) -> None:
    tally = run_crash(kills, traffic_seconds=(1.0, 2.0), **options)
    assert tally.problems == []
    assert tally.kills == kills
    assert len(tally.restart_seconds) == kills
    assert tally.clean
    # the agents really traded through the kills
    assert tally.acknowledged > 20


def test_the_served_venue_survives_kills_on_sqlite() -> None:
    _check(2)


@pytest.mark.postgres
def test_the_served_venue_survives_kills_on_postgres(pg_server_url: str) -> None:
    _check(1, store="postgres", pg_url=pg_server_url)
