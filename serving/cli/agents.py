"""``creditx agents`` and ``creditx cem``: run the fleet's agents and the CEM automation,
and read their decision logs.

``agents run`` and ``cem run`` work in process on the store named by
``CREDITX_DATABASE_URL`` (or ``--url``), with the forecasts the ``predict`` flow wrote
under ``CREDITX_HOME``; run them while no API server trades on the same store (the
server keeps the books in memory). ``agents run-http`` runs one instance's agent
against a running API with its token. Every decision lands in the decision log.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from market.agents.forecast import InstanceForecast

URL = typer.Option(None, "--url", help="store URL; default from CREDITX_DATABASE_URL/HOME")
PREDICTIONS = typer.Option(
    None, "--predictions", help="forecasts.parquet of the predict flow; default under HOME"
)
LIMIT = typer.Option(20, "--limit", min=1, max=1000, help="how many records")

agents_app = typer.Typer(help="The instances' trading agents.", no_args_is_help=True)
cem_app = typer.Typer(help="The CEM's automatic exchange rates and swaps.", no_args_is_help=True)


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _settings() -> Any:
    from serving.settings import get_settings

    return get_settings()


def _forecasts(path: Path | None) -> dict[str, InstanceForecast]:
    import pandas as pd

    from market.agents.forecast import forecasts_from_frame

    source = path or _settings().predictions_dir / "forecasts.parquet"
    if not source.exists():
        typer.secho(
            f"no forecasts at {source}: every agent uses its fallback rule", err=True, fg="yellow"
        )
        return {}
    return forecasts_from_frame(pd.read_parquet(source))


def _market(url: str | None) -> Any:
    from market.clock import system_clock
    from market.ledger import create_store_engine
    from serving.market_service import MarketService

    settings = _settings()
    if url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_store_engine(url or settings.ledger_url)
    return MarketService(engine, system_clock, settings.tiers_config)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)


def _policy(throttle_cost: int, risk: str, budget: int | None) -> Any:
    from market.agents.decision import OwnerPolicy
    from market.errors import InvalidPolicy

    try:
        return OwnerPolicy(throttle_cost=throttle_cost, risk_quantile=risk, budget=budget)
    except InvalidPolicy as exc:
        raise _fail(exc) from exc


def _policies(path: Path | None, default: Any) -> dict[str, Any]:
    """Return the owners' own policies, by instance, from a TOML file of their settings.

    Each ``[instance-id]`` table sets that instance's ``OwnerPolicy`` fields
    (``max_forecast_age`` in seconds); instances not named use the command's options.
    """
    if path is None:
        return {}
    import dataclasses
    import tomllib
    from datetime import timedelta

    from market.errors import InvalidPolicy

    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise _fail(RuntimeError(f"cannot read owner policies {path}: {exc}")) from exc
    out: dict[str, Any] = {}
    for instance_id, fields in document.items():
        if not isinstance(fields, dict):
            raise _fail(RuntimeError(f"{path}: [{instance_id}] must be a table of settings"))
        settings = dict(fields)
        if "max_forecast_age" in settings:
            settings["max_forecast_age"] = timedelta(seconds=settings["max_forecast_age"])
        try:
            out[instance_id] = dataclasses.replace(default, **settings)
        except TypeError as exc:
            raise _fail(RuntimeError(f"{path}: [{instance_id}]: {exc}")) from exc
        except InvalidPolicy as exc:
            raise _fail(RuntimeError(f"{path}: [{instance_id}]: {exc}")) from exc
    return out


THROTTLE = typer.Option(100, "--throttle-cost", help="minor units a throttled vCPU-minute costs")
RISK = typer.Option("q90", "--risk", help="forecast quantile the agents buy for (q50, q90)")
BUDGET = typer.Option(None, "--budget", help="most minor units each agent holds in bids")


@agents_app.command("run")
def agents_run(
    url: str | None = URL,
    predictions: Path | None = PREDICTIONS,
    throttle_cost: int = THROTTLE,
    risk: str = RISK,
    budget: int | None = BUDGET,
    policies: Path | None = typer.Option(
        None, "--policies", help="TOML of per-instance owner settings, one table per instance"
    ),
) -> None:
    """Let every instance's agent decide once and trade on the store's market."""
    if policies is not None and not policies.is_file():
        raise _fail(FileNotFoundError(f"no owner policies at {policies}"))
    from market.agents.runner import VenueAgents, fleet_instances
    from market.agents.valuation import pool_scarcity
    from market.clock import system_clock
    from market.decisions import SqlDecisionLog

    policy = _policy(throttle_cost, risk, budget)
    own = _policies(policies, policy)
    forecasts = _forecasts(predictions)
    market = _market(url)
    try:
        tiers = market.tiers
        unknown = sorted(set(own) - {i.id for i in tiers.instances()})
        if unknown:
            raise _fail(RuntimeError(f"owner policies name unknown instances {unknown}"))
        instances = fleet_instances(tiers)
        scarcity = {
            p.tier: pool_scarcity(p.available, p.capacity) for p in tiers.pools(market.ledger)
        }
        by_instance = {i[0]: own.get(i[0], policy) for i in instances}
        agents = VenueAgents(
            market.venue, instances, by_instance, SqlDecisionLog(market.engine), system_clock
        )
        with market.lock:
            decisions, results = agents.step(forecasts, scarcity)
    finally:
        market.close()
    refused = {r.intent.instance_id for r in results if r.error is not None}
    _table(
        "agent decisions",
        ["instance", "outcome", "spare", "lack", "orders", "refused"],
        [
            [d.instance_id, d.outcome, d.spare, d.lack, len(d.intents), d.instance_id in refused]
            for d in decisions
        ],
    )


@agents_app.command("run-http")
def agents_run_http(
    api: str = typer.Option(..., "--api", help="the API's base URL, e.g. http://127.0.0.1:8000"),
    token: str = typer.Option(..., "--token", envvar="CREDITX_AGENT_TOKEN", help="agent token"),
    instance: str = typer.Option(..., "--instance", help="the instance the token acts for"),
    vcpus: int = typer.Option(..., "--vcpus", min=1, help="the instance's vCPUs"),
    throttle_cost: int = THROTTLE,
    risk: str = RISK,
    budget: int | None = BUDGET,
) -> None:
    """Run one instance's agent once against a running API (retries, idempotency keys)."""
    import httpx

    from market.errors import AgentError
    from serving.agent_client import ApiTransport, HttpAgent

    policy = _policy(throttle_cost, risk, budget)
    with httpx.Client(base_url=api, timeout=30) as client:
        agent = HttpAgent(ApiTransport(client, token), instance, vcpus, policy)
        try:
            decision, results = agent.run_once()
        except AgentError as exc:
            raise _fail(exc) from exc
    typer.echo(f"{instance}: {decision.outcome}, spare {decision.spare}, lack {decision.lack}")
    for reason in decision.reasons:
        typer.echo(f"  {reason}")
    for r in results:
        status = r.error or f"ok {r.order_id}"
        typer.echo(
            f"  {r.intent.action} {r.intent.side} {r.intent.quantity}@{r.intent.price}: {status}"
        )


def _print_log(
    kind: str, subject: str | None, outcome: str | None, limit: int, url: str | None
) -> None:
    import json

    from market.decisions import DecisionQuery, SqlDecisionLog
    from market.ledger import create_store_engine
    from serving.migrations import upgrade

    engine = create_store_engine(url or _settings().ledger_url)
    try:
        upgrade(engine)
        records = SqlDecisionLog(engine).query(
            DecisionQuery(kind=kind, subject=subject, outcome=outcome, limit=limit)  # type: ignore[arg-type]
        )
    finally:
        engine.dispose()
    for r in records:
        typer.echo(
            f"{r.seq:>6} {r.at.isoformat()} {r.kind} {r.subject} {r.outcome} "
            f"{json.dumps(dict(r.detail), sort_keys=True)}"
        )


@agents_app.command("log")
def agents_log(
    instance: str | None = typer.Option(None, "--instance", help="only this instance"),
    outcome: str | None = typer.Option(None, "--outcome", help="e.g. fallback, rejected"),
    limit: int = LIMIT,
    url: str | None = URL,
) -> None:
    """Show the agents' decisions with the inputs they used."""
    _print_log("agent", instance, outcome, limit, url)


@cem_app.command("run")
def cem_run(
    url: str | None = URL,
    predictions: Path | None = PREDICTIONS,
    rounds: int = typer.Option(1, "--rounds", min=1, max=1000, help="intervals to run"),
    quantile: str = typer.Option("q90", "--quantile", help="forecast quantile of demand"),
    hours: int = typer.Option(24, "--hours", min=1, max=168, help="demand horizon"),
) -> None:
    """Adjust exchange rates and swap pool credits on forecast demand, and record why."""
    from market.cem.automation import (
        CemAutomation,
        CemPolicy,
        apply_decision,
        pinned_rates,
        releases_of,
        tier_states,
    )
    from market.decisions import SqlDecisionLog

    forecasts = _forecasts(predictions)
    market = _market(url)
    policy = CemPolicy()
    log = SqlDecisionLog(market.engine)
    rows = []
    try:
        names = [t.name for t in market.tiers.tiers()]
        automation = CemAutomation.resume(policy, log, names)
        for _ in range(rounds):
            with market.lock:
                states = tier_states(
                    market.tiers, market.ledger, forecasts, column=quantile, hours=hours
                )
                pins = pinned_rates(market.exchange.rate_changes(), releases_of(log, names), policy)
                decision = automation.step(states, market.clock(), pins)
                apply_decision(market.exchange, decision, policy, log)
            rows += [
                [r.tier, f"{float(r.excess_demand):+.3f}", r.old_rate, r.new_rate, r.manual]
                for r in decision.rates
            ]
            rows += [
                [f"{s.source_tier}->{s.destination_tier}", "swap", s.amount_in, s.amount_out, ""]
                for s in decision.swaps
            ]
    finally:
        market.close()
    _table("CEM decisions", ["tier", "excess demand", "old / in", "new / out", "manual"], rows)


@cem_app.command("release")
def cem_release(
    tier: str = typer.Argument(..., help="the tier whose rate the automation takes back"),
    actor: str = typer.Option("admin", "--actor", help="the administrator"),
    url: str | None = URL,
) -> None:
    """Hand a manually set exchange rate back to the CEM automation."""
    from market.cem.automation import release_manual_rate
    from market.decisions import SqlDecisionLog
    from market.errors import ExchangeError

    market = _market(url)
    try:
        market.tiers.tier(tier)
        if actor not in market.tiers.exchange.administrators:
            raise _fail(RuntimeError(f"{actor!r} is not an administrator"))
        release_manual_rate(SqlDecisionLog(market.engine), tier, actor, market.clock())
    except ExchangeError as exc:
        raise _fail(exc) from exc
    finally:
        market.close()
    typer.echo(f"the automation adjusts {tier}'s exchange rate again")


@cem_app.command("log")
def cem_log(
    tier: str | None = typer.Option(None, "--tier", help="only this tier"),
    outcome: str | None = typer.Option(None, "--outcome", help="e.g. rate, swap, manual_rate"),
    limit: int = LIMIT,
    url: str | None = URL,
) -> None:
    """Show why rates moved and swaps happened, with the inputs used."""
    _print_log("cem", tier, outcome, limit, url)


def register(app: typer.Typer) -> None:
    """Add ``creditx agents`` and ``creditx cem`` to the root app."""
    app.add_typer(agents_app, name="agents")
    app.add_typer(cem_app, name="cem")
