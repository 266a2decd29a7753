"""``creditx data`` commands: load, validate, generate and describe telemetry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from data.validation import ValidationPolicy

data_app = typer.Typer(
    help="Load, validate, generate and describe CPU telemetry.", no_args_is_help=True
)

_FORMAT_HELP = "Telemetry schema: auto (detected), shared, contract, azure, cloudwatch or mapped."
Format = Literal["auto", "shared", "contract", "azure", "cloudwatch", "mapped"]
_REPORT_SHOWN = 30

FormatOption = Annotated[Format, typer.Option("--format", help=_FORMAT_HELP)]
ColumnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--column",
        help="Map a contract column to the file's column, e.g. --column unique_id=host "
        "(repeat for ds, y, y_max, tier, vcpus).",
    ),
]
VmtableOption = Annotated[
    Path | None, typer.Option("--vmtable", help="Azure vmtable CSV giving each VM's vCPUs.")
]


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root ``creditx`` app."""
    app.add_typer(data_app, name="data")


@data_app.command("load")
def load_command(
    path: Annotated[str, typer.Argument(help="A file, a directory or a glob.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the frame contract to this Parquet.")
    ] = None,
    format: FormatOption = "auto",
    column: ColumnOption = None,
    vmtable: VmtableOption = None,
) -> None:
    """Load telemetry into the frame contract; print a summary, optionally write Parquet."""
    with _errors():
        frame = _load(path, format, column, vmtable)
    _print_summary(frame, path)
    if out is not None:
        _write(frame, out)


@data_app.command("validate")
def validate_command(
    path: Annotated[str, typer.Argument(help="A file, a directory or a glob.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the kept, repaired telemetry here.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the full report as CSV.")
    ] = None,
    format: FormatOption = "auto",
    column: ColumnOption = None,
    vmtable: VmtableOption = None,
    interval: Annotated[
        str | None, typer.Option(help="Expected spacing, e.g. 5min; inferred if omitted.")
    ] = None,
    max_gap: Annotated[int, typer.Option(help="Interpolate gaps up to this many intervals.")] = 12,
    duplicates: Annotated[
        Literal["dedupe", "reject"], typer.Option(help="Repair duplicates or reject the instance.")
    ] = "dedupe",
    out_of_range: Annotated[
        Literal["clip", "reject"], typer.Option(help="Repair out of range or reject the instance.")
    ] = "clip",
    nan: Annotated[
        Literal["interpolate", "reject"], typer.Option(help="Repair nan or reject the instance.")
    ] = "interpolate",
    out_of_order: Annotated[
        Literal["sort", "reject"], typer.Option(help="Repair out of order or reject the instance.")
    ] = "sort",
    irregular: Annotated[
        Literal["snap", "reject"], typer.Option(help="Repair irregular or reject the instance.")
    ] = "snap",
    long_gaps: Annotated[
        Literal["keep", "reject"], typer.Option(help="Repair long gaps or reject the instance.")
    ] = "keep",
) -> None:
    """Validate telemetry per instance; print the report, repair or reject by policy."""
    from data.validation import ValidationPolicy

    policy = ValidationPolicy(
        duplicates=duplicates,
        out_of_range=out_of_range,
        nan=nan,
        out_of_order=out_of_order,
        irregular=irregular,
        max_gap=max_gap,
        long_gaps=long_gaps,
    )
    frame, found, refusal = _validate(path, policy, format, column, vmtable, interval)
    if report is not None:
        found.to_csv(report, index=False)
    if frame is None:
        _fail(refusal)
    if out is not None:
        _write(frame, out)


def _validate(
    path: str,
    policy: ValidationPolicy,
    format: Format,
    column: list[str] | None,
    vmtable: Path | None,
    interval: str | None,
) -> tuple[pd.DataFrame | None, pd.DataFrame, str]:
    """Read and validate ``path`` and print the report.

    Return the kept frame (``None`` when every instance was rejected), the report and
    the refusal's message.
    """
    from data.errors import InstancesRejectedError
    from data.loaders import read_telemetry
    from data.sources import check_source

    with _errors():
        check_source(path, format=format, columns=_mapping(column))
    try:
        with _errors(reraise=(InstancesRejectedError,)), _row_progress("validating") as progress:
            result = read_telemetry(
                path,
                policy,
                format=format,
                columns=_mapping(column),
                vmtable=vmtable,
                interval=interval,
                progress=progress,
            )
    except InstancesRejectedError as exc:
        _print_report(exc.report)
        return None, exc.report, str(exc)
    _print_report(result.report)
    return result.frame, result.report, ""


@data_app.command("generate")
def generate_command(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    instances: Annotated[int, typer.Option(help="Number of instances.")] = 100,
    days: Annotated[float, typer.Option(help="Length in days.")] = 28.0,
    seed: Annotated[int, typer.Option(help="Seed of the fleet.")] = 0,
    freq: Annotated[str, typer.Option(help="Interval, e.g. 5min.")] = "5min",
    start: Annotated[
        str | None, typer.Option(help="First interval (UTC), e.g. 2024-01-01.")
    ] = None,
    float32: Annotated[
        bool, typer.Option("--float32", help="Store y and y_max as float32.")
    ] = False,
    chunk_instances: Annotated[int, typer.Option(help="Instances per written chunk.")] = 1000,
) -> None:
    """Generate a seeded synthetic fleet and write it as Parquet, chunk by chunk."""
    import numpy as np
    import pyarrow.parquet as pq
    from rich.progress import Progress

    from data.synthetic import iter_fleet

    with _errors():
        chunks = iter_fleet(
            instances,
            days,
            seed,
            freq,
            start,
            chunk_instances=chunk_instances,
            dtype=np.float32 if float32 else np.float64,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = 0
        writer: pq.ParquetWriter | None = None
        with Progress() as progress:
            task = progress.add_task("generating", total=instances)
            try:
                for chunk in chunks:
                    table = _to_arrow(chunk)
                    if writer is None:
                        writer = pq.ParquetWriter(out, table.schema)
                    writer.write_table(table)
                    rows += len(chunk)
                    progress.advance(task, chunk["unique_id"].nunique())
            finally:
                if writer is not None:
                    writer.close()
    typer.echo(f"wrote {instances:,} instances, {rows:,} rows to {out}")


@data_app.command("describe")
def describe_command(
    path: Annotated[str, typer.Argument(help="A file, a directory or a glob.")],
    format: FormatOption = "auto",
    column: ColumnOption = None,
    vmtable: VmtableOption = None,
) -> None:
    """Print a fleet's size, span and the quartiles of its per-instance statistics."""
    with _errors():
        frame = _load(path, format, column, vmtable)
    from rich.console import Console
    from rich.table import Table

    from data.calibration import STATISTICS, fleet_statistics

    with _errors():
        statistics = fleet_statistics(frame)
    _print_summary(frame, path)
    table = Table(title="per-instance statistics")
    table.add_column("statistic")
    for q in ("p10", "p25", "p50", "p75", "p90"):
        table.add_column(q, justify="right")
    for stat in STATISTICS:
        values = statistics[stat].quantile([0.1, 0.25, 0.5, 0.75, 0.9])
        table.add_row(stat, *(f"{v:.4g}" for v in values))
    Console().print(table)


def _load(
    path: str, format: Format, column: list[str] | None, vmtable: Path | None
) -> pd.DataFrame:
    """Load telemetry into the frame contract with a progress bar over its rows."""
    from data.sources import check_source

    check_source(path, format=format, columns=_mapping(column))
    from data.loaders import load_telemetry

    with _row_progress("loading") as progress:
        return load_telemetry(
            path,
            format=format,
            columns=_mapping(column),
            vmtable=vmtable,
            progress=progress,
        )


def _mapping(pairs: list[str] | None) -> dict[str, str] | None:
    from data.sources import column_mapping

    return column_mapping(pairs)


@contextmanager
def _errors(reraise: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    # Telemetry errors end the command with their message and exit code 2, no traceback.
    from data.errors import TelemetryError

    try:
        yield
    except TelemetryError as exc:
        if isinstance(exc, reraise):
            raise
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def _row_progress(description: str) -> Iterator[Callable[[int], None]]:
    # A spinner with a running row count: file sizes do not tell how many rows remain.
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        transient=True,
    )
    task = progress.add_task(description, total=None)
    with progress:
        yield lambda rows: progress.advance(task, rows)


def _print_summary(frame: pd.DataFrame, path: str) -> None:
    from data.frame import ID_COL, TIME_COL

    instances = frame[ID_COL].nunique()
    typer.echo(
        f"{path}: {instances:,} instances, {len(frame):,} rows, "
        f"{frame[TIME_COL].min()} to {frame[TIME_COL].max()}, columns {list(frame.columns)}"
    )


def _print_report(report: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    counts = report["status"].value_counts()
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "repaired", "rejected"))
    # Problem rows first: they are what a reader needs to see.
    shown = report.assign(_ok=report["status"] == "ok").sort_values(["_ok", "unique_id"])
    shown = shown.head(_REPORT_SHOWN)
    table = Table(title=f"validation report: {len(report)} instances ({summary})")
    headers = {
        "unique_id": "instance",
        "rows": "rows",
        "duplicates": "dup",
        "out_of_range": "range",
        "nan": "nan",
        "out_of_order": "order",
        "irregular": "irreg",
        "gaps": "gaps",
        "longest_gap": "longest",
        "filled": "filled",
        "status": "status",
    }
    for header in (*headers.values(), "detail"):
        table.add_column(header, overflow="fold")
    for _, row in shown.iterrows():
        detail = row["problems"] or row["actions"]
        table.add_row(*(str(row[name]) for name in headers), str(detail))
    Console(width=max(Console().width, 140)).print(table)
    if len(report) > _REPORT_SHOWN:
        typer.echo(f"... {len(report) - _REPORT_SHOWN} more instances; --report writes all")


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    import pyarrow as pa

    from data.frame import TIME_COL, epoch_nanoseconds

    # Timestamps go over as UTC nanoseconds: the generic pandas path would drop the zone.
    arrays = {
        name: (
            pa.array(epoch_nanoseconds(frame[name]), type=pa.timestamp("ns", tz="UTC"))
            if name == TIME_COL
            else pa.array(frame[name])
        )
        for name in frame.columns
    }
    return pa.table(arrays)


def _write(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    typer.echo(f"wrote {len(frame):,} rows to {out}")
