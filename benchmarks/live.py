"""``creditx bench live``: telemetry in and allowances out at fleet scale.

A fleet of 10,000 instances over the four tiers (``--instances``), each reading one
5-minute interval at a time:

* **accrual**: one batch of 10,000 readings received and booked
  (:meth:`market.cem.live.LiveAccrual.submit`: the checks, the pending rows, one
  transaction with the interval's ledger entry, its booked keys and the allowances),
  on SQLite (WAL, ``synchronous=FULL``; target <= 2 s) and on PostgreSQL (<= 3 s), the
  median of ``--repeats`` intervals, wall time beside this process's CPU time;
* **POST /v1/telemetry**: the same batch as JSON, and as Parquet, against a real
  ``creditx serve`` process (uvicorn, one worker, a SQLite store), one interval after
  another; latency p50/p99 over ``--posts`` batches each (JSON p99 <= 1 s), and the
  server's CPU time per batch;
* **allowance reads**: ``GET /v1/instances/{id}/allowance`` with agents' tokens from an
  open-loop load generator at ``--rate`` requests/s (500 by default): request ``n`` is
  due ``n / rate`` s after the start and its latency runs from then, so waiting for a
  free connection counts; p99 <= 20 ms;
* **the market round**: one hourly round of every agent of the fleet (decide and
  submit, each tier's call auction settled, the CEM's interval) on SQLite and
  PostgreSQL, by stage, with what it traded (:mod:`benchmarks.live_round`; <= 30 s).

``--kill-run`` runs instead seven simulated days of the live loop on a small fleet,
SIGKILLed at random five times, and audits the store (:mod:`benchmarks.live_kill`;
zero violations).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from benchmarks._report import Figure, report
from benchmarks.ledger import DEFAULT_PG_URL, _fresh_pg_schema
from benchmarks.serving import _cpu_seconds, _free_port

STEP = timedelta(minutes=5)
AGENT_TOKENS = 200


def register(bench_app: typer.Typer) -> None:
    """Add ``creditx bench live``."""
    bench_app.command("live")(live)


def live(
    json_out: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    pg_url: Annotated[
        str, typer.Option("--pg-url", help="PostgreSQL server; '' to skip")
    ] = DEFAULT_PG_URL,
    instances: Annotated[int, typer.Option(help="instances in the fleet", min=4)] = 10_000,
    repeats: Annotated[int, typer.Option(help="intervals booked per store", min=1)] = 5,
    posts: Annotated[int, typer.Option(help="batches posted per body format", min=1)] = 10,
    rate: Annotated[float, typer.Option(help="allowance reads offered per second")] = 500.0,
    duration: Annotated[float, typer.Option(help="seconds of allowance reads measured")] = 10.0,
    connections: Annotated[int, typer.Option(help="keep-alive connections reading")] = 32,
    kill_run: Annotated[
        bool, typer.Option("--kill-run", help="run only the 7-day loop killed at random")
    ] = False,
    kill_instances: Annotated[int, typer.Option(help="instances of the kill run", min=1)] = 200,
    kill_days: Annotated[int, typer.Option(help="simulated days of the kill run", min=1)] = 7,
    kills: Annotated[int, typer.Option(help="SIGKILLs of the kill run's loop", min=0)] = 5,
    seed: Annotated[int, typer.Option(help="seed of the kill run's fleet and kills")] = 5,
) -> None:
    """Accrual of a fleet's interval, POST /v1/telemetry, allowance reads, a market round."""
    if kill_run:
        _kill_run(json_out, kill_instances, kill_days, kills, seed)
        return
    figures = _accrual("sqlite", None, instances, repeats)
    if pg_url:
        url, drop = _fresh_pg_schema(pg_url)
        try:
            figures += _accrual("postgres", url, instances, repeats)
        finally:
            drop()
    figures += _served(instances, posts, rate, duration, connections)
    from benchmarks.live_round import rounds  # it builds its fleet with this module's

    figures += rounds(instances, pg_url)
    figures += [
        Figure("load average (1 min) after the run", os.getloadavg()[0], "processes"),
        Figure("CPU cores", float(os.cpu_count() or 0), "cores"),
    ]
    report("live", figures, json_out)


def _kill_run(json_out: Path | None, instances: int, days: int, kills: int, seed: int) -> None:
    # the kill run's module builds on the round's, which imports this one's fleet
    from benchmarks.live_kill import KillRun, kill_run_figures

    run = KillRun(instances=instances, days=days, kills=kills, seed=seed)
    figures = kill_run_figures(run, say=lambda line: typer.echo(line, err=True))
    figures += [
        Figure("load average (1 min) after the run", os.getloadavg()[0], "processes"),
        Figure("CPU cores", float(os.cpu_count() or 0), "cores"),
    ]
    report("live", figures, json_out)
    if any(f.met() is False for f in figures):
        raise typer.Exit(1)


# ------------------------------------------------------------------ the fleet


def fleet(instances: int) -> Any:
    """Return a tier manager of ``instances`` instances over the four default tiers."""
    from market.cem.tiers import load_config

    names = [t.name for t in load_config().tiers()]
    return fleet_of(
        _ids(instances),
        [names[i % len(names)] for i in range(instances)],
        [2 * (1 + i % 4) for i in range(instances)],
    )


def fleet_of(ids: Sequence[str], tiers: Sequence[str], vcpus: Sequence[int]) -> Any:
    """Return the default tiers holding exactly these instances (owners ``o0``-``o49``),
    each tier's hosts twice the vCPUs of its instances, so that every pool has room."""
    from market.cem.tiers import Host, Instance, TierManager, load_config

    config = load_config()
    held: dict[str, int] = dict.fromkeys((t.name for t in config.tiers()), 0)
    for tier, count in zip(tiers, vcpus, strict=True):
        held[tier] += int(count)
    hosts = []
    for name, count in held.items():
        # a host holds at most 4,096 vCPUs
        for n, start in enumerate(range(0, max(8, 2 * count), 4096)):
            hosts.append(Host(f"{name}-bench-{n}", name, min(4096, max(8, 2 * count) - start)))
    members = [
        Instance(i, str(t), int(v), f"o{k % 50}")
        for k, (i, t, v) in enumerate(zip(ids, tiers, vcpus, strict=True))
    ]
    return TierManager(config.tiers(), hosts, members, config.exchange)


def _ids(instances: int) -> list[str]:
    return [f"vm-{i:06d}" for i in range(instances)]


def _start(hours_ago: int = 4) -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0) - timedelta(
        hours=hours_ago
    )


def _readings(ids: list[str], interval: datetime, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    # most instances idle near baseline, a tail bursting
    cpu = np.round(np.clip(rng.gamma(1.2, 12.0, len(ids)), 0, 100), 3)
    return ids, cpu


def _open_store(url: str, instances: int) -> Any:
    from market.cem.live import LiveAccrual
    from market.cem.registry import Registry
    from market.ledger import Ledger, SqlStore
    from serving.migrations import upgrade

    upgrade(url)
    tiers = fleet(instances)
    store = SqlStore(url)
    Registry(store.engine).save(tiers)
    ledger = Ledger(store, lambda: datetime.now(UTC))
    tiers.open_accounts(ledger)
    return LiveAccrual(ledger, tiers, late_window=timedelta(days=1))


# ------------------------------------------------------------------ accrual in process


def _accrual(kind: str, url: str | None, instances: int, repeats: int) -> list[Figure]:
    from data.readings import ReadingBatch

    with tempfile.TemporaryDirectory(prefix="creditx-bench-live-") as tmp:
        live = _open_store(url or f"sqlite:///{Path(tmp) / 'ledger.db'}", instances)
        ids = _ids(instances)
        start = _start()
        walls, cpus = [], []
        for n in range(repeats):
            interval = start + n * STEP
            _, cpu = _readings(ids, interval, n)
            batch = ReadingBatch(
                np.array(ids, dtype=object),
                np.full(len(ids), int(interval.timestamp() * 1_000_000), dtype=np.int64),
                cpu,
                "bench",
            )
            began, cpu_began = time.perf_counter(), time.process_time()
            done = live.submit(batch, interval + STEP + timedelta(seconds=1))
            walls.append(time.perf_counter() - began)
            cpus.append(time.process_time() - cpu_began)
            if [b.instances for b in done.booked] != [instances]:
                raise RuntimeError(f"interval {n} booked {done.booked}, not {instances} instances")
        if not live.ledger.verify().ok:
            raise RuntimeError(f"the {kind} ledger does not verify after the accrual")
        live.ledger.close()
    target = "<= 2" if kind == "sqlite" else "<= 3"
    middle = sorted(range(repeats), key=lambda i: walls[i])[repeats // 2]
    return [
        Figure(
            f"{kind} accrual of {instances:,} instances, one interval (median)",
            walls[middle],
            "s",
            target,
        ),
        Figure(f"{kind} accrual CPU time (this process, same interval)", cpus[middle], "cpu-s"),
        Figure(f"{kind} accrual, slowest of {repeats} intervals", max(walls), "s"),
    ]


# ------------------------------------------------------------------ the served API


def _prepare_server_store(home: Path, instances: int) -> dict[str, Any]:
    from market.clock import system_clock
    from serving.tokens import TokenKind, TokenStore

    home.mkdir(parents=True, exist_ok=True)
    live = _open_store(f"sqlite:///{home / 'ledger.db'}", instances)
    tokens = TokenStore(live.engine, system_clock)
    ids = _ids(instances)
    step = max(1, instances // AGENT_TOKENS)
    agents = {i: tokens.issue(TokenKind.AGENT, i).token for i in ids[::step][:AGENT_TOKENS]}
    issued = {
        "collector": tokens.issue(TokenKind.COLLECTOR, "bench").token,
        "admin": tokens.issue(TokenKind.ADMIN, "admin").token,
        "agents": agents,
    }
    live.ledger.close()
    return issued


def _start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CREDITX_HOME": str(home),
        "CREDITX_RATE_LIMIT_PER_SECOND": "1000000",
        "CREDITX_RATE_LIMIT_BURST": "1000000",
        "CREDITX_LATE_WINDOW_MINUTES": str(24 * 60),
    }
    env.pop("CREDITX_DATABASE_URL", None)
    command = [
        sys.executable,
        "-c",
        "from serving.cli import app; app()",
        "serve",
        "--port",
        str(port),
        "--no-follow-champion",
        "--no-access-log",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def _wait_up(port: int, server: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"creditx serve exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"creditx serve did not answer on port {port} in {timeout} s")


def _bodies(instances: int, posts: int) -> list[tuple[str, bytes]]:
    # posts JSON batches then posts Parquet batches, one interval after another
    import json

    import pandas as pd

    ids = _ids(instances)
    start = _start(hours_ago=8)
    bodies = []
    for n in range(2 * posts):
        interval = start + n * STEP
        _, cpu = _readings(ids, interval, 100 + n)
        stamp = interval.isoformat().replace("+00:00", "Z")
        if n < posts:
            document = {
                "readings": [
                    {"instance_id": i, "interval_start": stamp, "cpu_percent": float(c)}
                    for i, c in zip(ids, cpu.tolist(), strict=True)
                ]
            }
            bodies.append(("application/json", json.dumps(document).encode()))
        else:
            frame = pd.DataFrame(
                {
                    "instance_id": ids,
                    "interval_start": pd.Timestamp(interval),
                    "cpu_percent": cpu,
                }
            )
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            bodies.append(("application/vnd.apache.parquet", buffer.getvalue()))
    return bodies


def _post_all(
    port: int, token: str, bodies: list[tuple[str, bytes]], server_pid: int, instances: int
) -> list[tuple[str, float, float, int]]:
    import httpx

    out = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for kind, body in bodies:
            cpu = _cpu_seconds(server_pid)
            began = time.perf_counter()
            response = client.post(
                "/v1/telemetry",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": kind},
            )
            latency = time.perf_counter() - began
            booked = sum(b["instances"] for b in response.json().get("booked", []))
            if response.status_code != 200 or booked != instances:
                raise RuntimeError(
                    f"POST /v1/telemetry: {response.status_code} {response.text[:300]}"
                )
            out.append((kind, latency, _cpu_seconds(server_pid) - cpu, len(body)))
    return out


def _served(
    instances: int, posts: int, rate: float, duration: float, connections: int
) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="creditx-bench-live-serve-") as tmp:
        home = Path(tmp)
        tokens = _prepare_server_store(home, instances)
        bodies = _bodies(instances, posts)
        port = _free_port()
        server = _start_server(home, port)
        try:
            _wait_up(port, server)
            posted = _post_all(port, tokens["collector"], bodies, server.pid, instances)
            cpu = _cpu_seconds(server.pid)
            reads = _load(port, tokens["agents"], duration, connections, rate)
            read_cpu = _cpu_seconds(server.pid) - cpu
        finally:
            server.terminate()
            server.wait(timeout=60)
    figures: list[Figure] = []
    for kind, label, target in (
        ("application/json", "JSON", "<= 1"),
        ("application/vnd.apache.parquet", "Parquet", None),
    ):
        latencies = sorted(p[1] for p in posted if p[0] == kind)
        cpus = [p[2] for p in posted if p[0] == kind]
        size = statistics.median(p[3] for p in posted if p[0] == kind)
        figures += [
            Figure(
                f"POST /v1/telemetry {label}, {instances:,} readings p50",
                _percentile(latencies, 0.5),
                "s",
            ),
            Figure(
                f"POST /v1/telemetry {label}, {instances:,} readings p99 ({posts} posts)",
                _percentile(latencies, 0.99),
                "s",
                target,
            ),
            Figure(f"server CPU per {label} batch (median)", statistics.median(cpus), "cpu-s"),
            Figure(f"{label} batch size", size / 1e6, "MB"),
        ]
    figures += [
        Figure("allowance GET offered rate", rate, "requests/s"),
        Figure("allowance GET answered rate", reads["rate"], "requests/s", f">= {0.95 * rate:g}"),
        Figure("allowance GET p50", reads["p50"], "ms"),
        Figure("allowance GET p99", reads["p99"], "ms", "<= 20"),
        Figure("allowance GET non-2xx", reads["errors"], "responses", "<= 0"),
        Figure("server CPU per allowance GET", 1000 * read_cpu / max(reads["total"], 1), "ms"),
    ]
    return figures


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------ the read load


def _load(
    port: int, agents: dict[str, str], duration: float, connections: int, rate: float
) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, float] = pool.apply(
            _run_reads, (port, agents, duration, connections, rate)
        )
    return result


def _run_reads(
    port: int, agents: dict[str, str], duration: float, connections: int, rate: float
) -> dict[str, float]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the default event loop is only slower
        pass
    return asyncio.run(_reads(port, agents, duration, connections, rate))


async def _reads(
    port: int, agents: dict[str, str], duration: float, connections: int, rate: float
) -> dict[str, float]:
    warmup = min(2.0, duration / 4)
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration
    latencies: list[float] = []
    errors = total = answered = 0
    due = itertools.count()
    pairs = list(agents.items())

    async def client(worker: int) -> None:
        nonlocal errors, total, answered
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = worker
        while True:
            sent = start + next(due) / rate
            await asyncio.sleep(max(0.0, sent - time.perf_counter()))
            if sent >= stop:
                break
            n += connections
            instance, token = pairs[n % len(pairs)]
            writer.write(
                f"GET /v1/instances/{instance}/allowance HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = time.perf_counter()
            total += 1
            answered += measure_from <= done < stop
            if sent >= measure_from:
                latencies.append(done - sent)
                errors += not head.startswith(b"HTTP/1.1 2")
        writer.close()

    await asyncio.gather(*(client(i) for i in range(connections)))
    latencies.sort()

    def percentile(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {
        "rate": answered / duration,
        "p50": percentile(0.50),
        "p99": percentile(0.99),
        "errors": float(errors),
        "total": float(total),
    }
