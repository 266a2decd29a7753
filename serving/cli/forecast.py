"""``creditx`` commands of the ``models`` package."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import pandas as pd


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root ``creditx`` app."""
    app.command("forecast")(forecast)


def forecast(
    data: Path = typer.Argument(..., help="telemetry file (any format `creditx data` loads)"),
    out: Path = typer.Option(..., help="write the forecasts here (.csv or .parquet)"),
    h: int = typer.Option(24, help="hours to forecast"),
    quantile: list[float] = typer.Option([0.1, 0.5, 0.9], help="quantile levels"),
) -> None:
    """Fit the fleet forecaster on a telemetry file and forecast every instance."""
    from data.sources import check_source

    check_source(data)  # a bad file fails in a second, before the libraries load
    from data import load_telemetry, to_hourly
    from models import FleetForecaster, ForecastError
    from models.base import check_quantiles
    from serving.cli.progress import progress_bars

    with progress_bars() as bar:
        # Reading, fitting (most of the time), forecasting, writing: one step each.
        step = bar(f"forecasting {data.name}", 4)
        frame = to_hourly(load_telemetry(data))
        step(1)
        try:
            check_quantiles(quantile)
            fleet = FleetForecaster().fit(frame)
            step(1)
            result = fleet.predict(h, quantiles=tuple(quantile))
            step(1)
        except ForecastError as exc:
            raise typer.BadParameter(str(exc)) from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            result.to_parquet(out, index=False)
        else:
            result.to_csv(out, index=False)
        step(1)
    typer.echo(f"{result['unique_id'].nunique()} instances, {h} h ahead -> {out}")
    print_summary(fleet.summary())


def print_summary(summary: pd.DataFrame) -> None:
    """Print the best-ranked models and their back-test errors as a table."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    table = Table(title="models ranked first (instances) and back-test MASE, by horizon")
    table.add_column("model")
    for horizon in ("hour", "day", "week"):
        table.add_column(f"next {horizon}", justify="right")
        table.add_column("MASE", justify="right")
    for row in summary.itertuples(index=False):
        cells = [str(row.model)]
        for horizon in ("hour", "day", "week"):
            mase = getattr(row, f"{horizon}_mase")
            cells += [
                str(getattr(row, f"{horizon}_instances")),
                "" if pd.isna(mase) else f"{mase:.3f}",
            ]
        table.add_row(*cells)
    Console().print(table)
