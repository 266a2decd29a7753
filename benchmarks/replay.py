"""``creditx bench replay``: the fleet replay's speed and what the exchange buys.

Speed: a seeded synthetic fleet (1,000 instances x 28 days by default) through every
policy; the forecasts (fitted at the pipelines' cadence) are timed apart, as training.
Outcome: the standard scenario on the real Azure trace (``../shared/data``): how much
of the static/physical-limit gap ``market`` closes, how far it stays from
``market-oracle``, and conservation violations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from benchmarks._report import Figure, report

_TRACE = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "azure_v1_100vms.parquet"
)


def speed_figures(instances: int, days: float, policies: tuple[str, ...] = ()) -> list[Figure]:
    """Return the seconds each policy (every one by default) takes on a synthetic fleet."""
    from data.synthetic import generate_fleet
    from pipelines.replay import POLICIES, load_scenario, prepare_fleet, run_policy
    from pipelines.replay.forecasts import model_forecasts, oracle_forecasts

    scenario = load_scenario()
    frame = generate_fleet(instances, days, seed=0, attributes=False)
    fleet = prepare_fleet(frame, scenario)
    began = time.perf_counter()
    forecasts = model_forecasts(fleet, scenario)
    oracle = oracle_forecasts(fleet, scenario.horizon_hours)
    training = time.perf_counter() - began
    label = f"{instances:,} instances x {days:g} days"
    figures = [Figure(f"forecasts at the pipelines' cadence, {label}", training, "s")]
    total = 0.0
    cpu_total = 0.0
    violations = 0
    chosen = policies or POLICIES
    for policy in chosen:
        table = oracle if policy == "market-oracle" else forecasts
        began, cpu_began = time.perf_counter(), time.process_time()
        result = run_policy(fleet, scenario, policy, table)
        seconds = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        total += seconds
        cpu_total += cpu
        violations += result.conservation_violations
        figures.append(Figure(f"{policy}, {label}", seconds, "s"))
        # the machine may be shared: CPU seconds show the work apart from waiting
        figures.append(Figure(f"{policy}, {label}, CPU", cpu, "s"))
    if set(chosen) == set(POLICIES):
        # the target is set for 1,000 instances x 28 days; smaller runs carry none
        target = "<= 120" if instances >= 1_000 and days >= 28 else None
        figures.append(Figure(f"every policy, {label}, excluding training", total, "s", target))
    else:
        figures.append(Figure(f"{', '.join(chosen)}, {label}, excluding training", total, "s"))
    figures.append(Figure(f"CPU of the policies above, {label}", cpu_total, "s"))
    figures.append(Figure("conservation violations (synthetic)", violations, "count", "<= 0"))
    return figures


def outcome_figures(trace: Path) -> list[Figure]:
    """Return each shipped scenario's outcome on a real trace against its targets."""
    from data.loaders import load_telemetry
    from pipelines.replay import load_scenario, replay

    frame = load_telemetry(trace)
    figures = []
    violations = 0
    for name in ("standard", "scarce-values", "scarce-values-one-tier", "scarce-uniform"):
        run = replay(frame, load_scenario(name))
        summaries = {p: r.summary() for p, r in run.results.items()}
        closed = run.value_gap_closed()
        violations += sum(r.conservation_violations for r in run.results.values())
        for policy, summary in summaries.items():
            figures.append(
                Figure(f"{name}, {policy}: throttled share", summary["throttled_share"], "share")
            )
            figures.append(
                Figure(
                    f"{name}, {policy}: value-weighted throttling, share of demand value",
                    summary["value_cost_share"],
                    "share",
                )
            )
        figures += _scenario_targets(name, summaries, closed)
        money = summaries["market"]
        balance = money["paid"] - money["seller_receipts"] - money["fees"] - money["pool_revenue"]
        figures.append(
            Figure(
                f"{name}, market: payments less receipts, fees, pool revenue",
                balance,
                "minor units",
                "<= 0",
            )
        )
    figures.append(Figure(f"conservation violations ({trace.name})", violations, "count", "<= 0"))
    return figures


def _scenario_targets(
    name: str, summaries: dict[str, dict[str, Any]], closed: dict[str, float | None]
) -> list[Figure]:
    def nan(value: float | None) -> float:
        return float("nan") if value is None else value

    market, pool_swap = summaries["market"], summaries["pool+swap"]
    if name.startswith("scarce-values"):
        by_value = nan(closed.get("pool-by-value"))
        return [
            Figure(
                f"{name}: market closes of the value gap", nan(closed["market"]), "share", ">= 0.60"
            ),
            Figure(f"{name}: pool-by-value closes of the value gap", by_value, "share"),
            Figure(
                f"{name}: market less pool-by-value",
                nan(closed["market"]) - by_value,
                "share",
                "> 0",
            ),
            Figure(
                f"{name}: market-oracle closes of the value gap",
                nan(closed["market-oracle"]),
                "share",
                ">= 0.75",
            ),
        ]
    excess = market["throttled_share"] - pool_swap["throttled_share"]
    if name == "scarce-uniform":
        return [
            Figure(f"{name}: market less pool+swap, throttled share", excess, "share", "<= 0.001")
        ]
    price = market["overflow_day_price_to_value"]
    return [
        Figure(f"{name}: market less pool+swap, throttled share", excess, "share", "<= 0"),
        Figure(
            f"{name}: worst overflow day's median clearing price / median owner value",
            nan(price),
            "ratio",
            "<= 0.5",
        ),
    ]


def register(bench_app: typer.Typer) -> None:
    """Add the ``replay`` benchmark command."""

    @bench_app.command("replay")
    def replay(
        json_out: Path | None = typer.Option(None, "--json", help="write the figures here"),
        instances: int = typer.Option(1_000, help="instances of the synthetic fleet"),
        days: float = typer.Option(28.0, help="days of the synthetic fleet"),
        trace: Path = typer.Option(_TRACE, help="real trace for the outcome targets"),
        outcome: bool = typer.Option(True, help="replay the real trace for the targets"),
        policies: str = typer.Option("", help="comma-separated policies to time; all without"),
    ) -> None:
        """Time every policy on a synthetic fleet; check the targets on a real trace."""
        chosen = tuple(p.strip() for p in policies.split(",") if p.strip())
        figures = speed_figures(instances, days, chosen)
        if outcome:
            if trace.exists():
                figures += outcome_figures(trace)
            else:
                typer.echo(f"no trace at {trace}: outcome figures left out", err=True)
        report("replay", figures, json_out)
