"""The demo's live day: one day of the synthetic fleet through the live loop, against the API.

:func:`run_live_day` starts the API (``creditx serve``, as a process of its own) on an
:class:`~market.clock.AcceleratedClock` that reads the start of the fleet's last day and
runs ``speed`` times as fast as the wall clock. Then it plays that day as the live
system lives it: each 5-minute interval's readings are posted to ``POST /v1/telemetry``
with a collector's token once the interval has ended on the API's clock (every interval
ended since the last post goes in one batch), and ten minutes into each hour, as
``creditx schedule`` does, the ``market-round`` flow runs that hour's round through
``POST /v1/admin/market/rounds``: real Prefect flow runs, each leaving its table
artifact. Before the first round every instance's agent is funded with a deposit, so
the auctions have buyers. At the end the allowance feed and the rounds are read back.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from data.readings import STEP_SECONDS
from market.clock import AcceleratedClock, system_clock
from pipelines.errors import PipelineError
from pipelines.params import MarketRoundParams, SyntheticFleet

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.market_round import RoundRun

HOURS = 24
#: Minutes into each hour the round runs, as the schedule's ``MARKET_ROUND_CRON``.
ROUND_MINUTE = 10
_STEP = timedelta(seconds=STEP_SECONDS)
_PARQUET = "application/vnd.apache.parquet"


class LiveDayError(PipelineError):
    """The API refused what the live day sent it; ``status`` is its HTTP status
    (``None`` when it did not answer)."""

    def __init__(self, what: str, status: int | None, detail: str) -> None:
        self.status = status
        answer = "got no answer" if status is None else f"answered {status}"
        super().__init__(f"{what} {answer}: {detail}")


@dataclass(frozen=True, slots=True)
class ApiLaunch:
    """How to start the API on a clock: its command line, environment and URL."""

    command: tuple[str, ...]
    environment: Mapping[str, str] = field(repr=False)
    url: str


@dataclass(frozen=True, slots=True)
class LiveDayOutcome:
    """What the live day did: readings posted and booked, rounds run, the feed read."""

    api_url: str
    day_start: datetime
    intervals: int
    readings: int
    accepted: int
    refused: int
    intervals_booked: int
    rounds: tuple[RoundRun, ...]
    feed_instances: int
    feed_last_interval: datetime | None
    wall_seconds: float

    @property
    def trades(self) -> int:
        """Return how many trades the day's auctions made."""
        return sum(int(a["trades"]) for r in self.rounds for a in r.record.get("auctions", ()))


def live_day_readings(
    fleet: SyntheticFleet, instances: Collection[str], hours: int = HOURS
) -> pd.DataFrame:
    """Return the 5-minute readings of the last ``hours`` whole hours of ``fleet`` (a
    day by default), of the given ``instances``: ``instance_id``, ``interval_start``,
    ``cpu_percent``, ``step`` (the interval's index in the day), sorted by step then
    instance."""
    import pandas as pd

    from data.synthetic import generate_fleet

    frame = generate_fleet(
        fleet.instances, fleet.days, seed=fleet.seed, freq=fleet.freq, attributes=False
    )
    day_end = (frame["ds"].max() + _STEP).floor("h")
    day_start = day_end - pd.Timedelta(hours=hours)
    frame = frame[
        (frame["ds"] >= day_start)
        & (frame["ds"] < day_end)
        & frame["unique_id"].astype(str).isin(set(instances))
    ]
    readings = pd.DataFrame(
        {
            "instance_id": frame["unique_id"].astype(str),
            "interval_start": frame["ds"],
            # the synthetic series are percentages; a reading outside 0..100 is refused
            "cpu_percent": frame["y"].clip(0.0, 100.0),
            "step": ((frame["ds"] - day_start) // _STEP).astype("int64"),
        }
    )
    return readings.sort_values(["step", "instance_id"], ignore_index=True)


def run_live_day(
    readings: pd.DataFrame,
    launch: Callable[[AcceleratedClock], ApiLaunch],
    *,
    collector_token: str,
    token_file: Path,
    speed: float = 600.0,
    startup_seconds: float = 20.0,
    funds: int = 1_000_000,
    log: Path | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> LiveDayOutcome:
    """Start the API on an accelerated clock and play a day of readings through it.

    Parameters
    ----------
    readings
        The day's readings (:func:`live_day_readings`).
    launch
        Return the API's command line, environment and URL for a clock.
    collector_token
        The telemetry collector's bearer token.
    token_file
        The administrator token the ``market-round`` flow and the deposits use
        (mode 0600).
    speed
        Simulated seconds per wall-clock second.
    startup_seconds
        Wall-clock seconds the API is given to start before its clock reads the
        day's start.
    funds
        Money (minor units) deposited into each instance's funds before the first round.
    log
        Where the API's output goes.
    say
        Called with a line of progress every few simulated hours.

    Raises
    ------
    LiveDayError
        If the API refuses a batch or a deposit.
    MarketRoundError
        If a round fails.
    StoreUnavailableError
        If the API does not start.
    """
    from pipelines.servers import running_server

    day_start = readings["interval_start"].min().to_pydatetime()
    origin = system_clock() + timedelta(seconds=startup_seconds)
    clock = AcceleratedClock(day_start, speed, origin=origin)
    api = launch(clock)
    began = time.monotonic()
    with (
        running_server(
            "creditx API", api.command, f"{api.url}/v1/health", env=api.environment, log=log
        ),
        httpx.Client(base_url=api.url, timeout=300) as client,
    ):
        rounds_params = MarketRoundParams(api_url=api.url, token_file=token_file)
        _fund(client, rounds_params, sorted(set(readings["instance_id"])), funds)
        played = _play(client, clock, readings, collector_token, rounds_params, say)
        feed = _feed(client, rounds_params)
    last = max((a["interval_start"] for a in feed), default=None)
    return LiveDayOutcome(
        api_url=api.url,
        day_start=day_start,
        intervals=int(readings["step"].max()) + 1,
        readings=len(readings),
        accepted=played.accepted,
        refused=played.refused,
        intervals_booked=played.booked,
        rounds=tuple(played.rounds),
        feed_instances=len(feed),
        feed_last_interval=None if last is None else datetime.fromisoformat(last),
        wall_seconds=time.monotonic() - began,
    )


@dataclass
class _Played:
    # what the loop has done so far
    posted: int = 0
    accepted: int = 0
    refused: int = 0
    booked: int = 0
    rounds: list[RoundRun] = field(default_factory=list)


def _play(
    client: httpx.Client,
    clock: AcceleratedClock,
    readings: pd.DataFrame,
    collector_token: str,
    rounds_params: MarketRoundParams,
    say: Callable[[str], None],
) -> _Played:
    # One event at a time, in the API's time: post what ended, run the hour's round.
    from pipelines.market_round import market_round_flow

    day_start = clock.start
    steps = int(readings["step"].max()) + 1
    hours = steps * STEP_SECONDS // 3600
    played = _Played()
    while played.posted < steps or len(played.rounds) < hours:
        now = clock()
        ended = min(steps, max(0, (now - day_start) // _STEP))
        round_at = day_start + timedelta(hours=len(played.rounds), minutes=ROUND_MINUTE)
        if ended > played.posted:
            batch = readings[(readings["step"] >= played.posted) & (readings["step"] < ended)]
            _post(client, batch, collector_token, played)
            played.posted = ended
            if ended % (steps // 4) == 0:
                hours = ended * STEP_SECONDS // 3600
                say(
                    f"live day {hours:02d}:00: {ended} of {steps} intervals posted, "
                    f"{len(played.rounds)} rounds run"
                )
        elif len(played.rounds) < hours and now >= round_at:
            hour = round_at.replace(minute=0)
            played.rounds.append(market_round_flow(rounds_params.model_copy(update={"hour": hour})))
        else:
            due = min(day_start + (played.posted + 1) * _STEP, round_at)
            time.sleep(max(0.0, (clock.wall_time_of(due) - system_clock()).total_seconds()))
    return played


def _post(client: httpx.Client, batch: pd.DataFrame, collector_token: str, played: _Played) -> None:
    # Parquet, the compact form of the API's two: one body per batch of intervals.
    buffer = io.BytesIO()
    batch[["instance_id", "interval_start", "cpu_percent"]].to_parquet(buffer, index=False)
    headers = {"Authorization": f"Bearer {collector_token}", "Content-Type": _PARQUET}
    receipt = _call(client, "POST", "/v1/telemetry", content=buffer.getvalue(), headers=headers)
    played.accepted += int(receipt["accepted"])
    played.refused += len(receipt["refused"])
    played.booked += len(receipt["booked"])


def _fund(
    client: httpx.Client, params: MarketRoundParams, instances: list[str], funds: int
) -> None:
    from pipelines.market_round import read_admin_token

    headers = {"Authorization": f"Bearer {read_admin_token(params)}"}
    for instance_id in instances:
        deposit = {"instance_id": instance_id, "amount": funds}
        _call(client, "POST", "/v1/admin/deposits", json=deposit, headers=headers)


def _feed(client: httpx.Client, params: MarketRoundParams) -> list[dict[str, Any]]:
    # The allowance feed from the start, page after page, as a follower reads it.
    from pipelines.market_round import read_admin_token

    headers = {"Authorization": f"Bearer {read_admin_token(params)}"}
    latest: dict[str, dict[str, Any]] = {}
    cursor = 0
    while True:
        query = {"since": cursor, "limit": 1000}
        page = _call(client, "GET", "/v1/admin/allowances", params=query, headers=headers)
        for allowance in page["allowances"]:
            latest[allowance["instance_id"]] = allowance
        if not page["allowances"] or page["next_cursor"] == cursor:
            return list(latest.values())
        cursor = page["next_cursor"]


def _call(client: httpx.Client, method: str, path: str, **request: Any) -> Any:
    # One request to the API, its failure told as what was asked and what came back.
    what = f"{method} {path}"
    try:
        reply = client.request(method, path, **request)
    except httpx.HTTPError as exc:
        raise LiveDayError(what, None, f"{type(exc).__name__}: {exc}") from exc
    if not reply.is_success:
        raise LiveDayError(what, reply.status_code, reply.text[:500])
    return reply.json()
