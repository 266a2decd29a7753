"""``creditx bench data``: generate a synthetic fleet; load, validate and resample it.

* generate 10,000 instances x 28 days of 5-minute telemetry (80.6 M rows) in memory
  with :func:`data.generate_fleet`; held to <= 60 s;
* load the same fleet back from Parquet (the frame contract), validate it with the
  default policy and resample it to hourly mean, max and p95; held to <= 60 s and a
  peak resident memory of <= 6 GB.

Wall seconds carry the targets; the CPU seconds beside them show how much of the
wall time was the stage's own work when the machine is shared. Each stage runs in
its own spawned process, so the peak RSS it reports (from
``resource.getrusage``) is the stage's own and not the benchmark's. Writing the
Parquet file between the stages is not timed.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from benchmarks._report import Figure, report

_GB = 1e9


def _peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _generate_stage(instances: int, days: float, out: str, queue: Any) -> None:
    from data.synthetic import generate_fleet

    start, cpu = time.perf_counter(), _cpu_seconds()
    fleet = generate_fleet(instances, days, seed=0)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    rows = len(fleet)
    peak = _peak_rss_bytes()
    fleet.to_parquet(out, index=False)
    queue.put({"seconds": seconds, "cpu": cpu, "rows": rows, "peak": peak})


def _load_stage(path: str, queue: Any) -> None:
    from data.loaders import read_telemetry
    from data.resample import resample

    timings: dict[str, float] = {}
    start, cpu = time.perf_counter(), _cpu_seconds()
    result = read_telemetry(path)
    timings["validate"] = time.perf_counter() - start
    hourly = resample(result.frame, "1h", ("mean", "max", "p95"))
    timings["total"] = time.perf_counter() - start
    timings["cpu"] = _cpu_seconds() - cpu
    queue.put(
        {
            **timings,
            "rows": len(result.frame),
            "hourly_rows": len(hourly),
            "rejected": len(result.rejected),
            "peak": _peak_rss_bytes(),
        }
    )


def _in_process(target: Any, *args: Any) -> dict[str, float]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    outcome = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"benchmark stage {target.__name__} exited with {process.exitcode}")
    return dict(outcome)


def run(instances: int, days: float) -> list[Figure]:
    """Run both stages and return their figures."""
    with tempfile.TemporaryDirectory(prefix="creditx-bench-data-") as tmp:
        path = str(Path(tmp) / "fleet.parquet")
        generated = _in_process(_generate_stage, instances, days, path)
        loaded = _in_process(_load_stage, path)
    rows = generated["rows"]
    return [
        Figure("fleet rows (instances x intervals)", rows, "rows"),
        Figure("generate fleet", generated["seconds"], "s", "<= 60"),
        Figure("generate CPU time (user + system)", generated["cpu"], "s"),
        Figure("generate rate", rows / generated["seconds"] / 1e6, "M rows/s"),
        Figure("generate peak RSS", generated["peak"] / _GB, "GB"),
        Figure("load + validate", loaded["validate"], "s"),
        Figure("load + validate + resample hourly", loaded["total"], "s", "<= 60"),
        Figure("load + validate + resample CPU time (user + system)", loaded["cpu"], "s"),
        Figure("load/validate/resample peak RSS", loaded["peak"] / _GB, "GB", "<= 6"),
        Figure("hourly rows (mean, max, p95)", loaded["hourly_rows"], "rows"),
        Figure("instances rejected", loaded["rejected"], "instances"),
    ]


def register(bench_app: typer.Typer) -> None:
    """Add ``creditx bench data`` to the bench app."""

    @bench_app.command("data")
    def data_bench(
        json_out: Path | None = typer.Option(None, "--json", help="write the figures here"),
        instances: int = typer.Option(10_000, help="instances in the fleet"),
        days: float = typer.Option(28.0, help="days of 5-minute telemetry"),
    ) -> None:
        """Generate a fleet; load, validate and resample it to hourly."""
        report("data", run(instances, days), json_out)
