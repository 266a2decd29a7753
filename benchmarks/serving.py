"""``creditx bench serving``: the API under load over loopback.

The service runs as ``creditx serve`` does (uvicorn, one worker) in a process of its
own on a fresh SQLite store; the load comes from another process, an asyncio client
on keep-alive sockets. Two phases, each measured after a short warm-up:

* forecast GET: ``/v1/instances/{id}/forecast`` across 100 instances and 3 horizons;
* order placement: ``POST /v1/instances/{id}/orders`` with a fresh Idempotency-Key
  each, crossing bids and asks of instance pairs, so orders rest, trade and settle;
  each response is sent only after its batch committed to SQLite
  (WAL, ``synchronous=FULL``).

Forecast GETs come from a closed loop (each connection sends its next request when
the last one is answered). Orders come from an open loop at a fixed rate, as agents
place them: request ``n`` is due ``n / rate`` seconds after the start, taken by the
next free connection, and its latency runs from when it was due, so a request that
waits for a free connection counts that wait too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmarks._report import Figure, report

FORECAST_INSTANCES = 100
ORDER_PAIRS = (
    ("vm-bronze-1", "vm-bronze-2"),
    ("vm-silver-1", "vm-silver-2"),
    ("vm-gold-1", "vm-gold-2"),
)


def register(bench_app: typer.Typer) -> None:
    """Add the ``serving`` command to ``creditx bench``."""
    bench_app.command("serving")(serving)


def serving(
    json_out: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    duration: Annotated[float, typer.Option(help="seconds measured per phase")] = 10.0,
    get_connections: Annotated[
        int, typer.Option(help="keep-alive connections reading forecasts")
    ] = 16,
    order_connections: Annotated[
        int, typer.Option(help="keep-alive connections placing orders (the most in flight)")
    ] = 64,
    order_rate: Annotated[
        float, typer.Option(help="orders offered per second (open loop)", min=1.0)
    ] = 400.0,
) -> None:
    """Measure forecast GETs and durable order placements against `creditx serve`."""
    with tempfile.TemporaryDirectory(prefix="creditx-bench-serving-") as home:
        tokens = _prepare_store(Path(home))
        port = _free_port()
        server = _start_server(Path(home), port)
        try:
            _wait_ready(port, server)
            cpu = _cpu_seconds(server.pid)
            forecast = _load(port, "forecast", tokens, duration, get_connections)
            cpu, forecast_cpu = _cpu_seconds(server.pid), _cpu_seconds(server.pid) - cpu
            orders = _load(port, "orders", tokens, duration, order_connections, order_rate)
            order_cpu = _cpu_seconds(server.pid) - cpu
        finally:
            server.terminate()
            server.wait(timeout=30)
        stored = _stored_responses(Path(home))
    figures = [
        Figure("forecast GET rate", forecast["rate"], "requests/s", ">= 1000"),
        Figure("forecast GET p50", forecast["p50"], "ms"),
        Figure("forecast GET p99", forecast["p99"], "ms", "<= 50"),
        Figure("forecast GET non-2xx", forecast["errors"], "responses", "<= 0"),
        Figure("order placement offered rate", order_rate, "orders/s"),
        Figure("order placement rate", orders["rate"], "orders/s", ">= 300"),
        Figure("order placement p50", orders["p50"], "ms"),
        Figure("order placement p99", orders["p99"], "ms", "<= 100"),
        Figure("order placement non-2xx", orders["errors"], "responses", "<= 0"),
        Figure("orders acknowledged", orders["acknowledged"], "orders"),
        Figure(
            "acknowledged orders missing from SQLite",
            orders["acknowledged"] - stored,
            "orders",
            "<= 0",
        ),
        Figure("server CPU per forecast GET", 1000 * forecast_cpu / forecast["total"], "ms"),
        Figure("server CPU per order", 1000 * order_cpu / orders["total"], "ms"),
        Figure("load average (1 min) after the run", os.getloadavg()[0], "processes"),
        Figure("CPU cores", float(os.cpu_count() or 0), "cores"),
    ]
    report("serving", figures, json_out)


# ------------------------------------------------------------------ the store


def _prepare_store(home: Path) -> dict[str, Any]:
    from serving.settings import Settings

    settings = Settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    admin, agents = _funded_agents(settings)
    ids = _write_predictions(settings)
    return {"admin": admin, "agents": agents, "forecast_ids": ids}


def _funded_agents(settings: Any) -> tuple[str, dict[str, str]]:
    # the order pairs' instances, rich in credits and funds, each with an agent token
    from market.clock import system_clock
    from market.ledger import (
        EntryRequest,
        Transfer,
        create_store_engine,
        credits_asset,
        instance_credits,
        mint_account,
    )
    from serving.market_service import MarketService
    from serving.tokens import TokenKind, TokenStore

    market = MarketService(create_store_engine(settings.ledger_url), system_clock)
    tokens = TokenStore(market.engine, system_clock)
    agents: dict[str, str] = {}
    for pair in ORDER_PAIRS:
        for instance_id in pair:
            tier = market.tiers.instance(instance_id).tier
            market.ledger.post(
                EntryRequest(
                    (
                        Transfer(
                            mint_account(credits_asset(tier)),
                            instance_credits(instance_id),
                            10**12,
                        ),
                    ),
                    "accrual",
                    "bench",
                )
            )
            market.exchange.deposit_funds(instance_id, 10**13, actor="admin")
            agents[instance_id] = tokens.issue(TokenKind.AGENT, instance_id).token
    admin = tokens.issue(TokenKind.ADMIN, "admin").token
    market.close()
    return admin, agents


def _write_predictions(settings: Any) -> list[str]:
    # batch predictions in the predict flow's format, for a fleet of 100 instances
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ids = [f"vm-{i:04d}" for i in range(FORECAST_INSTANCES)]
    rows = []
    for unique_id in ids:
        level = float(rng.uniform(5, 60))
        for horizon, hours in {"hour": 1, "day": 24, "week": 168}.items():
            for h in range(1, hours + 1):
                yhat = level * (1 + 0.3 * np.sin(2 * np.pi * h / 24))
                rows.append((unique_id, horizon, start + timedelta(hours=h), yhat))
    frame = pd.DataFrame(rows, columns=["unique_id", "horizon", "ds", "yhat"])
    frame["q50"] = frame["yhat"] * 0.97
    frame["q90"] = frame["yhat"] * 1.3
    frame["model"] = "bench"
    frame["source"] = "learned"
    out = settings.predictions_dir
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "forecasts.parquet", index=False)
    (out / "manifest.json").write_text(
        json.dumps(
            {
                "model_name": settings.model_name,
                "model_version": "1",
                "generated_at": start.isoformat(),
            }
        )
    )
    return ids


def _cpu_seconds(pid: int) -> float:
    # user + system time of the server process, in seconds (Linux /proc)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stored_responses(home: Path) -> float:
    import sqlite3

    with sqlite3.connect(home / "ledger.db") as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM api_idempotency WHERE scope LIKE 'orders:%'"
        ).fetchone()
    return float(count)


# ------------------------------------------------------------------ the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CREDITX_HOME": str(home),
        "CREDITX_RATE_LIMIT_PER_SECOND": "1000000",
        "CREDITX_RATE_LIMIT_BURST": "1000000",
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
    ]
    return subprocess.Popen(command, env=env)


def _wait_ready(port: int, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"creditx serve exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if b'"forecasts_loaded":true' in sock.recv(4096):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"creditx serve did not become ready on port {port} in {timeout} s")


# ------------------------------------------------------------------ the load


def _load(
    port: int,
    phase: str,
    tokens: dict[str, Any],
    duration: float,
    connections: int,
    rate: float | None = None,
) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, float] = pool.apply(
            _run_phase, (port, phase, tokens, duration, connections, rate)
        )
    return result


def _run_phase(
    port: int,
    phase: str,
    tokens: dict[str, Any],
    duration: float,
    connections: int,
    rate: float | None,
) -> dict[str, float]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the default event loop is only slower
        pass
    return asyncio.run(_phase(port, phase, tokens, duration, connections, rate))


def _requests(phase: str, tokens: dict[str, Any], worker: int) -> Any:
    if phase == "forecast":
        auth = f"Authorization: Bearer {tokens['admin']}\r\n"
        ids = tokens["forecast_ids"]
        horizons = ("hour", "day", "week")
        n = worker
        while True:
            n += 1
            path = f"/v1/instances/{ids[n % len(ids)]}/forecast?horizon={horizons[n % 3]}"
            yield f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()
    buyer, seller = ORDER_PAIRS[worker % len(ORDER_PAIRS)]
    n = 0
    while True:
        n += 1
        # a pair's connections alternate sides, so bids and asks cross and trade
        sell = (n + worker // len(ORDER_PAIRS)) % 2 == 0
        instance_id = seller if sell else buyer
        body = json.dumps(
            {
                "side": "sell" if sell else "buy",
                "price": 99 if sell else 101,
                "quantity": 1_000,
                "time_in_force": "gtc",
            }
        ).encode()
        head = (
            f"POST /v1/instances/{instance_id}/orders HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {tokens['agents'][instance_id]}\r\n"
            f"Idempotency-Key: bench-{worker}-{n}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        yield head.encode() + body


async def _phase(
    port: int,
    phase: str,
    tokens: dict[str, Any],
    duration: float,
    connections: int,
    rate: float | None,
) -> dict[str, float]:
    """Load the server with ``connections`` clients: a closed loop, or an open loop at
    ``rate`` requests per second whose latencies run from each request's due time."""
    warmup = min(2.0, duration / 4)
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration
    latencies: list[float] = []
    errors = 0
    acknowledged = 0
    total = 0
    answered_in_window = 0
    due = itertools.count()

    async def client(worker: int) -> None:
        nonlocal errors, acknowledged, total, answered_in_window
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        requests = _requests(phase, tokens, worker)
        while True:
            sent = time.perf_counter()
            if rate is not None:
                # the next request due, whenever this connection is free to send it
                sent = start + next(due) / rate
                await asyncio.sleep(max(0.0, sent - time.perf_counter()))
            if sent >= stop:
                break
            writer.write(next(requests))
            head = await _response_head(reader)
            done = time.perf_counter()
            acknowledged += head.startswith(b"HTTP/1.1 2")
            total += 1
            answered_in_window += measure_from <= done < stop
            if sent >= measure_from:
                latencies.append(done - sent)
                if not head.startswith((b"HTTP/1.1 2",)):
                    errors += 1
        writer.close()

    await asyncio.gather(*(client(i) for i in range(connections)))
    return {
        # what the server answered in the window, not what the client offered
        "rate": answered_in_window / duration,
        **_percentiles(latencies),
        "errors": float(errors),
        "acknowledged": float(acknowledged),
        "total": float(total),
    }


async def _response_head(reader: asyncio.StreamReader) -> bytes:
    # one HTTP/1.1 response: its head returned, its body read past
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return head


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99)}
