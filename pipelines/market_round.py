"""The ``market-round`` flow: ask the API to run an hour's market round, record what it did.

The round itself (the pools' offers, every agent through the one runner, each tier's
call auction and its settlement, the CEM's interval) runs in the API, on the served
forecasts, exactly once per hour (``POST /v1/admin/market/rounds``). The flow calls it
for the current hour (or ``hour``), retrying only that request: a round is idempotent
by its hour, so a retry after a lost answer or a server error books nothing twice. It
fails with the API's reason on 401, 403, 409 and 422, and on a 5xx once the retries
are spent. The round's record becomes a Prefect table artifact (key ``market-round``):
one row per tier with the pool's level and offer, the auction's clearing price,
volume, trades and money paid, the credits swapped in and out, the exchange rate after
and the hour's draw price of the priced pool; the agents' order counts and the swaps
head its description.

The administrator token is never a parameter: the flow reads it from the environment
variable ``params.token_env`` (``CREDITX_ADMIN_TOKEN``) or, when that is unset, from
``params.token_file``, which must be readable by its owner only (mode 0600).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipelines.config import quiet_user_errors
from pipelines.errors import InvalidParametersError, MarketRoundError
from pipelines.params import MarketRoundParams

quiet_user_errors()

ROUNDS_PATH = "/v1/admin/market/rounds"
ARTIFACT_KEY = "market-round"


@dataclass(frozen=True, slots=True)
class RoundRun:
    """The round the API ran: its hour, stage and record (see ``RoundPublic``)."""

    round_id: str
    stage: str
    record: dict[str, Any] = field(default_factory=dict)


def read_admin_token(params: MarketRoundParams) -> str:
    """Return the administrator token: ``params.token_env`` if set, else ``token_file``.

    Raises
    ------
    InvalidParametersError
        If neither holds a token, or the file may be read by others than its owner.
    """
    found = os.environ.get(params.token_env, "").strip()
    if found:
        return found
    path = params.token_file
    if path is None:
        raise InvalidParametersError(
            "token_file", f"no administrator token: set {params.token_env} or give token_file"
        )
    return _token_from_file(path)


def _token_from_file(path: Path) -> str:
    # A token others may read is a leaked token: refused, as ssh refuses such a key.
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        token = path.read_text().strip()
    except OSError as exc:
        raise InvalidParametersError("token_file", f"cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise InvalidParametersError(
            "token_file", f"{path} has mode {mode:04o}; make it 0600 (chmod 600 {path})"
        )
    if not token:
        raise InvalidParametersError("token_file", f"{path} is empty")
    return token


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    # Only a round the API did not answer or failed is asked again; a refusal stands.
    try:
        state.result()
    except MarketRoundError as exc:
        return exc.transient
    except Exception:
        return False
    return False


@task(retries=3, retry_delay_seconds=2, retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def request_round(params: MarketRoundParams) -> RoundRun:
    """POST the hour's round to the API and return what it answered."""
    body = {} if params.hour is None else {"hour": params.hour.isoformat()}
    url = params.api_url.rstrip("/") + ROUNDS_PATH
    headers = {"Authorization": f"Bearer {read_admin_token(params)}"}
    try:
        reply = httpx.post(url, json=body, headers=headers, timeout=params.timeout_seconds)
    except httpx.HTTPError as exc:
        raise MarketRoundError(params.api_url, None, f"{type(exc).__name__}: {exc}") from exc
    if not reply.is_success:
        raise MarketRoundError(params.api_url, reply.status_code, _problem(reply))
    found = reply.json()
    return RoundRun(str(found["round_id"]), str(found["stage"]), dict(found.get("record") or {}))


def _problem(reply: httpx.Response) -> str:
    # problem+json names the reason in ``detail``; anything else is quoted as sent.
    try:
        document = reply.json()
    except ValueError:
        return reply.text[:200] or reply.reason_phrase
    if isinstance(document, dict):
        return str(document.get("detail") or document.get("title") or document)[:500]
    return str(document)[:500]


def round_table(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row per tier of a round's record, the table of its artifact.

    Each row holds the pool's level before the round and the credits it offered, the
    auction's clearing price, volume, demand, supply, trades and money paid, the pool
    credits swapped in and out by the CEM, the exchange rate after, and the hour's draw
    price of the priced pool.
    """
    pools = record.get("pools_before") or {}
    draw_prices = (record.get("pool") or {}).get("draw_prices") or {}
    auctions = {a["tier"]: a for a in record.get("auctions") or ()}
    rates = record.get("rates") or {}
    tiers = sorted(set(pools) | set(auctions) | set(rates))
    offered = {t: 0 for t in tiers}
    for offer in record.get("offers") or ():
        tier = str(offer["seller"]).removeprefix("pool-")
        offered[tier] = offered.get(tier, 0) + int(offer["quantity"])
    swapped_in = {t: 0 for t in tiers}
    swapped_out = {t: 0 for t in tiers}
    for swap in record.get("swaps") or ():
        swapped_out[swap["from"]] = swapped_out.get(swap["from"], 0) + int(swap["in"])
        swapped_in[swap["to"]] = swapped_in.get(swap["to"], 0) + int(swap["out"])
    rows = []
    for tier in tiers:
        auction = auctions.get(tier, {})
        rows.append(
            {
                "tier": tier,
                "pool_before": pools.get(tier),
                "pool_offered": offered.get(tier, 0),
                "clearing_price": auction.get("clearing_price"),
                "volume_credits": auction.get("volume_credits"),
                "demand_credits": auction.get("demand_credits"),
                "supply_credits": auction.get("supply_credits"),
                "trades": auction.get("trades", 0),
                "paid": auction.get("paid", 0),
                "swapped_in": swapped_in.get(tier, 0),
                "swapped_out": swapped_out.get(tier, 0),
                "exchange_rate": rates.get(tier),
                "draw_price": draw_prices.get(tier),
            }
        )
    return rows


def round_summary(run: RoundRun) -> str:
    """Return the artifact's description: the round, the agents' orders, the swaps."""
    agents = run.record.get("agents")
    orders = (
        "orders submitted by an earlier run of the round"
        if agents is None
        else f"{agents['decisions']} agent decisions, {agents['orders_placed']} orders placed, "
        f"{agents['orders_refused']} refused"
    )
    swaps = run.record.get("swaps") or []
    moved = "; ".join(f"{s['from']} -> {s['to']}: {s['in']} in, {s['out']} out" for s in swaps)
    return (
        f"Market round {run.round_id} ({run.stage}): {orders}. "
        f"Swaps: {moved or 'none'}. Pool levels and swaps in milli-credits, "
        "prices and money paid in minor units, exchange rates in micro-units."
    )


@flow(name="market-round", log_prints=False)
def market_round_flow(params: MarketRoundParams) -> RoundRun:
    """Run the hour's market round through the API and record it as a table artifact."""
    logger = get_run_logger()
    run = request_round(params)
    rows = round_table(run.record)
    create_table_artifact(rows, key=ARTIFACT_KEY, description=round_summary(run))
    for row in rows:
        logger.info(
            "round %s %s: clearing price %s, %s credits in %s trades, %s paid",
            run.round_id,
            row["tier"],
            row["clearing_price"],
            row["volume_credits"],
            row["trades"],
            row["paid"],
        )
    return run
