"""``creditx bench crash``: trading agents over HTTP while the server is SIGKILLed.

Twelve agents trade through ``creditx serve`` (limit, immediate-or-cancel,
good-till-time and auction orders, cancels, each order under an ``Idempotency-Key``)
and an administrator runs call auctions. At random moments the server is killed with
SIGKILL; once the transactions it sent have ended (a PostgreSQL backend finishes a
COMMIT its killed client sent), the store is audited
(:func:`market.venue.audit.audit_venue_store`: books not crossed, no IOC open, escrow
equal to the open orders' shares, the ledger conserving every asset), every write an
agent was told of is looked up, and the server is restarted; agents retry what got no
answer with the same key and body. Figures: kills survived, restarts refused,
acknowledged writes missing, conservation violations, crossed books, resting IOCs,
orders placed twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
import typer

from benchmarks._report import Figure, report
from market.clock import system_clock
from market.ledger import (
    EntryRequest,
    Transfer,
    credits_asset,
    instance_credits,
    instance_funds,
    mint_account,
)
from market.venue.audit import audit_venue_store
from market.venue.handling import t_auctions, t_orders, t_trades
from serving.errors import IdempotencyMismatch
from serving.services import build_services
from serving.settings import Settings
from serving.tables import api_idempotency
from serving.tokens import TokenKind

_TERMINAL = {"filled", "cancelled", "expired"}
_MID = 100


@dataclass
class CrashTally:
    """What a crash run counted."""

    kills: int = 0
    restarts_refused: int = 0
    acknowledged_missing: int = 0
    conservation_violations: int = 0
    crossed_books: int = 0
    resting_iocs: int = 0
    escrow_mismatches: int = 0
    placed_twice: int = 0
    retries_refused: int = 0
    acknowledged: int = 0
    requests: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    server_cpu_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    # each acknowledged write found missing, counted once however many checks see it
    missing_writes: set[str] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        """Return whether every kill came back whole."""
        return not (
            self.restarts_refused
            or self.acknowledged_missing
            or self.conservation_violations
            or self.crossed_books
            or self.resting_iocs
            or self.escrow_mismatches
            or self.placed_twice
            or self.retries_refused
        )


@dataclass
class _Acks:
    """What the agents were told, and what they still wait to hear."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: dict[str, tuple[str, int]] = field(default_factory=dict)
    trades: set[str] = field(default_factory=set)
    cancels: set[str] = field(default_factory=set)
    auctions: set[str] = field(default_factory=set)
    requests: int = 0
    retries_refused: int = 0


class _Server:
    """One ``creditx serve`` child process over the bench's store."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.cpu_seconds = 0.0
        self.log = Path(env["CREDITX_HOME"]) / "serve.log"

    def start(self, timeout: float) -> float | None:
        """Start the server; return the seconds it took to answer, ``None`` if it did not."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "serve", "--no-follow-champion"],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                return None
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        return None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, sig)
        # a server that exited by itself was already reaped by ``poll``
        with contextlib.suppress(ChildProcessError):
            _, _, usage = os.wait4(self.process.pid, 0)
            self.cpu_seconds += usage.ru_utime + usage.ru_stime
        self.process = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(settings: Settings) -> tuple[str, dict[str, str], list[str]]:
    """Migrate the store, fund every instance; return admin and agent tokens and tiers."""
    services = build_services(settings, system_clock, champion=None)
    market = services.market
    admin = services.tokens.issue(TokenKind.ADMIN, "bench").token
    tokens: dict[str, str] = {}
    legs = []
    for instance in market.tiers.instances():
        tokens[instance.id] = services.tokens.issue(TokenKind.AGENT, instance.id).token
        asset = credits_asset(instance.tier)
        legs += [
            Transfer(mint_account(asset), instance_credits(instance.id), 10**9),
            Transfer(mint_account("funds"), instance_funds(instance.id), 10**9),
        ]
    market.ledger.post(EntryRequest(tuple(legs), "deposit", "bench"))
    tiers = [t.name for t in market.tiers.tiers()]
    services.close()
    return admin, tokens, tiers


def _agent(
    name: str,
    instance_id: str,
    token: str,
    url: str,
    up: threading.Event,
    stop: threading.Event,
    acks: _Acks,
    seed: int,
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    pending: list[tuple[str, dict[str, object]]] = []
    mine: list[str] = []
    n = 0
    with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
        while not stop.is_set():
            if not up.is_set():
                up.wait(0.5)
                continue
            if pending:
                key, body = pending[0]
                outcome = _place(client, instance_id, key, body, acks, mine)
                if outcome == "lost":
                    continue
                pending.pop(0)
                if outcome == "refused":
                    with acks.lock:
                        acks.retries_refused += 1
                continue
            n += 1
            roll = rng.random()
            if roll < 0.15 and mine:
                _cancel(client, instance_id, mine.pop(rng.randrange(len(mine))), acks)
                continue
            side = rng.choice(("buy", "sell"))
            order: dict[str, object] = {"side": side, "quantity": rng.randint(1, 20) * 100}
            if roll < 0.35:
                # marketable: trades with what rests, the rest is cancelled
                order |= {"time_in_force": "ioc", "price": _MID + (15 if side == "buy" else -15)}
            else:
                offset = rng.randint(-8, 12)
                order |= {
                    "time_in_force": "gtc",
                    "price": _MID - offset if side == "buy" else _MID + offset,
                }
                if roll < 0.5:
                    expires = datetime.now(UTC) + timedelta(seconds=rng.uniform(2, 20))
                    order |= {"time_in_force": "gtt", "expires_at": expires.isoformat()}
                elif roll < 0.65:
                    order["venue"] = "auction"
            key = f"{name}-{n}"
            if _place(client, instance_id, key, order, acks, mine) == "lost":
                pending.append((key, order))


def _place(
    client: httpx.Client,
    instance_id: str,
    key: str,
    body: dict[str, object],
    acks: _Acks,
    mine: list[str],
) -> str:
    try:
        response = client.post(
            f"/v1/instances/{instance_id}/orders", json=body, headers={"Idempotency-Key": key}
        )
    except httpx.HTTPError:
        return "lost"
    with acks.lock:
        acks.requests += 1
    if response.status_code >= 500:
        return "lost"
    if response.status_code not in (200, 201):
        # a business refusal (no funds, self-trade, an expiry passed while the server was
        # down) is an answer; the same key refused for the same body is not
        mismatch = response.json().get("title") == IdempotencyMismatch.title
        return "refused" if mismatch else "answered"
    placed = response.json()
    order = placed["order"]
    with acks.lock:
        acks.orders[order["order_id"]] = (order["state"], order["filled"])
        acks.trades.update(t["trade_id"] for t in placed["trades"])
    if order["state"] not in _TERMINAL and order["venue"] == "continuous":
        mine.append(order["order_id"])
    return "answered"


def _cancel(client: httpx.Client, instance_id: str, order_id: str, acks: _Acks) -> None:
    """Cancel one of the agent's orders; record the state the answer acknowledged.

    A 200 carries the order as the request left it: cancelled, or expired if its
    good-till-time passed before the cancel reached its book (the venue expires due
    orders when it next touches the book, and the expiry wins). Only a 200 saying
    ``cancelled`` acknowledges a cancel; any 200 acknowledges the state it names.
    """
    try:
        response = client.delete(f"/v1/instances/{instance_id}/orders/{order_id}")
    except httpx.HTTPError:
        return
    with acks.lock:
        acks.requests += 1
        if response.status_code == 200:
            order = response.json()
            acks.orders[order_id] = (order["state"], order["filled"])
            if order["state"] == "cancelled":
                acks.cancels.add(order_id)


def _auctioneer(
    token: str, tiers: list[str], url: str, up: threading.Event, stop: threading.Event, acks: _Acks
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
        while not stop.wait(0.7):
            if not up.is_set():
                continue
            tier = random.choice(tiers)
            with contextlib.suppress(httpx.HTTPError):
                response = client.post(f"/v1/admin/tiers/{tier}/auctions")
                if response.status_code in (200, 201):
                    with acks.lock:
                        acks.auctions.add(response.json()["auction_id"])


def _wait_sessions_end(engine: sa.Engine, sessions: str, timeout: float = 60.0) -> bool:
    """Wait until no PostgreSQL session named ``sessions`` is left; return whether none is.

    SIGKILL ends the server, not the transactions it sent: a backend that received a
    COMMIT goes on and commits after its client died, and only then notices and exits.
    Until every backend of the killed server is gone the store may still change, and a
    check reading it in several statements could see half of one commit.
    """
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    with engine.connect() as conn:
        while conn.exec_driver_sql(query, (sessions,)).scalar():
            conn.rollback()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
    return True


def _check(engine: sa.Engine, acks: _Acks, tally: CrashTally) -> None:
    """Audit the store after a kill and look up every acknowledged write."""
    audit = audit_venue_store(engine)
    tally.crossed_books += len(audit.crossed_books)
    tally.resting_iocs += len(audit.resting_iocs)
    tally.escrow_mismatches += len(audit.escrow_mismatches)
    tally.conservation_violations += len(audit.ledger_errors)
    tally.problems += audit.problems()
    with engine.connect() as conn:
        stored = {r.order_id: (r.state, r.filled) for r in conn.execute(sa.select(t_orders))}
        trades = set(conn.execute(sa.select(t_trades.c.trade_id)).scalars())
        auctions = set(conn.execute(sa.select(t_auctions.c.auction_id)).scalars())
        records = conn.execute(
            sa.select(api_idempotency.c.status_code, api_idempotency.c.body)
        ).all()
    with acks.lock:
        missing = {
            f"order {o}": f"acknowledged {s} (filled {filled}), stored {stored.get(o)}"
            for o, (s, filled) in acks.orders.items()
            if o not in stored or stored[o][1] < filled or (s in _TERMINAL and stored[o][0] != s)
        }
        missing |= {f"trade {t}": "is gone" for t in acks.trades - trades}
        missing |= {
            f"cancel of {o}": f"acknowledged, stored {stored.get(o)}"
            for o in acks.cancels
            if stored.get(o, ("",))[0] != "cancelled"
        }
        missing |= {f"auction {a}": "is gone" for a in acks.auctions - auctions}
        tally.acknowledged = (
            len(acks.orders) + len(acks.trades) + len(acks.cancels) + len(acks.auctions)
        )
    new = missing.keys() - tally.missing_writes
    tally.missing_writes |= new
    tally.acknowledged_missing = len(tally.missing_writes)
    tally.problems += [f"after kill {tally.kills}: {w} {missing[w]}" for w in sorted(new)]
    # every order was placed under a key whose record commits with it: an order no
    # record names, or one named twice, was placed twice
    named: list[str] = []
    for status, body in records:
        if status == 0:
            named.append(body)
        elif status in (200, 201):
            named.append(json.loads(body)["order"]["order_id"])
    twice = (len(stored) - len(set(named) & stored.keys())) + (len(named) - len(set(named)))
    tally.placed_twice += twice
    if twice:
        tally.problems.append(f"{twice} orders without exactly one idempotency record")


@contextlib.contextmanager
def _store(store: str, pg_url: str, home: Path) -> Iterator[tuple[str, str, str | None]]:
    """Yield the bench's store URL, the server's, and the name of the server's sessions.

    On PostgreSQL the server's connections carry an ``application_name`` of their own,
    so that the bench can wait for them to end after a kill (:func:`_wait_sessions_end`).
    """
    if store == "sqlite":
        url = f"sqlite:///{home / 'creditx.db'}"
        yield url, url, None
        return
    schema = f"crash_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in pg_url else "?"
        url = f"{pg_url}{sep}options=-csearch_path%3D{schema}"
        sessions = f"creditx-{schema}"
        yield url, f"{url}&application_name={sessions}", sessions
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _server_environment(home: Path, server_url: str, port: int) -> dict[str, str]:
    # the served process: this store, this port, no rate limit in the agents' way
    return {
        **os.environ,
        "CREDITX_HOME": str(home),
        "CREDITX_DATABASE_URL": server_url,
        "CREDITX_API_PORT": str(port),
        "CREDITX_RATE_LIMIT_PER_SECOND": "100000",
        "CREDITX_RATE_LIMIT_BURST": "100000",
    }


@dataclass
class _Traffic:
    # the agents and the auctioneer, and the events that pause and stop them
    threads: list[threading.Thread]
    up: threading.Event
    stop: threading.Event
    acks: _Acks


def _traffic(
    agents: int, seed: int, tokens: dict[str, str], admin: str, tiers: list[str], url: str
) -> _Traffic:
    up, stop, acks = threading.Event(), threading.Event(), _Acks()
    instances = sorted(tokens)
    threads = [
        threading.Thread(
            target=_agent,
            args=(
                f"agent{k}",
                instances[k % len(instances)],
                tokens[instances[k % len(instances)]],
                url,
                up,
                stop,
                acks,
                seed * 1000 + k,
            ),
            daemon=True,
        )
        for k in range(agents)
    ]
    threads.append(
        threading.Thread(target=_auctioneer, args=(admin, tiers, url, up, stop, acks), daemon=True)
    )
    return _Traffic(threads, up, stop, acks)


@dataclass
class _KillPlan:
    # how many kills, how far apart, and until when a kill may start
    kills: int
    rng: random.Random
    traffic_seconds: tuple[float, float]
    start_timeout: float
    deadline: float | None
    say: Callable[[int, CrashTally], None] | None


def _kill_and_restart(
    server: _Server,
    engine: sa.Engine,
    sessions: str | None,
    traffic: _Traffic,
    plan: _KillPlan,
    tally: CrashTally,
) -> None:
    # SIGKILL the server under traffic, audit the store, restart; stop at a refused restart
    for kill in range(plan.kills):
        if plan.deadline is not None and time.monotonic() > plan.deadline:
            break
        time.sleep(plan.rng.uniform(*plan.traffic_seconds))
        traffic.up.clear()
        server.kill()
        tally.kills += 1
        if sessions is not None and not _wait_sessions_end(engine, sessions):
            tally.problems.append(f"after kill {tally.kills}: its sessions did not end")
        _check(engine, traffic.acks, tally)
        took = server.start(plan.start_timeout)
        if took is None:
            tally.restarts_refused += 1
            tally.problems.append(
                f"restart after kill {kill + 1} refused: "
                + server.log.read_text(errors="replace")[-600:]
            )
            break
        tally.restart_seconds.append(took)
        traffic.up.set()
        if plan.say is not None:
            plan.say(kill + 1, tally)


def _run_under_traffic(
    server: _Server,
    engine: sa.Engine,
    sessions: str | None,
    traffic: _Traffic,
    plan: _KillPlan,
    tally: CrashTally,
) -> None:
    try:
        if server.start(plan.start_timeout) is None:
            raise RuntimeError(f"the server did not start; see {server.log}")
        traffic.up.set()
        for thread in traffic.threads:
            thread.start()
        _kill_and_restart(server, engine, sessions, traffic, plan, tally)
        # let the agents retry what the last kill left unanswered, then check again
        time.sleep(2.0)
    finally:
        traffic.stop.set()
        traffic.up.set()
        for thread in traffic.threads:
            if thread.ident is not None:
                thread.join(15)
        server.kill(signal.SIGTERM)


def run_crash(
    kills: int,
    *,
    store: str = "sqlite",
    pg_url: str = "postgresql+psycopg://127.0.0.1:5432/test",
    agents: int = 12,
    seed: int = 7,
    traffic_seconds: tuple[float, float] = (0.3, 2.5),
    start_timeout: float = 300.0,
    budget_seconds: float | None = None,
    say: Callable[[int, CrashTally], None] | None = None,
) -> CrashTally:
    """Kill the served venue ``kills`` times under trading agents; return the tally.

    With ``budget_seconds`` no kill starts after that long: a slow machine reports the
    kills that fitted.
    """
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    plan = _KillPlan(kills, random.Random(seed), traffic_seconds, start_timeout, deadline, say)
    tally = CrashTally()
    with (
        tempfile.TemporaryDirectory() as tmp,
        _store(store, pg_url, Path(tmp)) as (url, server_url, sessions),
    ):
        home = Path(tmp)
        port = _free_port()
        settings = Settings(
            home=home,
            database_url=url,
            rate_limit_per_second=100_000.0,
            rate_limit_burst=100_000,
        )
        admin, tokens, tiers = _prepare(settings)
        server = _Server(_server_environment(home, server_url, port), port)
        engine = sa.create_engine(url)
        traffic = _traffic(agents, seed, tokens, admin, tiers, server.url)
        _run_under_traffic(server, engine, sessions, traffic, plan, tally)
        if sessions is not None:
            _wait_sessions_end(engine, sessions)
        _check(engine, traffic.acks, tally)
        engine.dispose()
    tally.requests = traffic.acks.requests
    tally.retries_refused = traffic.acks.retries_refused
    tally.server_cpu_seconds = server.cpu_seconds
    return tally


def register(bench_app: typer.Typer) -> None:
    """Add the ``crash`` benchmark command."""
    bench_app.command("crash")(crash)


def crash(
    json_out: Path | None = typer.Option(None, "--json", help="write the figures here"),
    kills: int = typer.Option(20, help="SIGKILLs of the server"),
    store: str = typer.Option("sqlite", help="sqlite or postgres"),
    pg_url: str = typer.Option(
        "postgresql+psycopg://127.0.0.1:5432/test",
        help="the PostgreSQL server (a schema of its own is made and dropped)",
    ),
    agents: int = typer.Option(12, help="trading agents"),
    seed: int = typer.Option(7, help="seed of the agents and the kill times"),
    minutes: float | None = typer.Option(
        None, help="start no kill after this long; report the kills that fitted"
    ),
) -> None:
    """Kill the served venue at random under trading agents; check every restart."""
    if store not in ("sqlite", "postgres"):
        raise typer.BadParameter("store must be sqlite or postgres", param_hint="--store")
    started, cpu = time.monotonic(), time.process_time()

    def interrupted(_signum: int, _frame: object) -> None:
        # SIGTERM as Ctrl-C: the server is stopped and the store cleaned up
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)

    def say(done: int, tally: CrashTally) -> None:
        typer.echo(
            f"kill {done}/{kills}: restarted in {tally.restart_seconds[-1]:.1f} s, "
            f"{tally.acknowledged} writes acknowledged, problems {len(tally.problems)}",
            err=True,
        )

    tally = run_crash(
        kills,
        store=store,
        pg_url=pg_url,
        agents=agents,
        seed=seed,
        budget_seconds=None if minutes is None else minutes * 60,
        say=say,
    )
    wall = time.monotonic() - started
    for problem in tally.problems[:20]:
        typer.echo(problem, err=True)
    report("crash", _crash_figures(tally, store, kills, wall, time.process_time() - cpu), json_out)
    if not tally.clean or tally.kills - tally.restarts_refused < kills:
        raise typer.Exit(1)


def _crash_figures(
    tally: CrashTally, store: str, kills: int, wall: float, bench_cpu: float
) -> list[Figure]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    mean_restart = sum(tally.restart_seconds) / max(len(tally.restart_seconds), 1)
    survived = tally.kills - tally.restarts_refused
    return [
        Figure(f"kills survived, {store}", survived, "kills", f">= {kills}"),
        Figure("kills run", tally.kills, "kills"),
        Figure("restarts refused", tally.restarts_refused, "restarts", "<= 0"),
        Figure("acknowledged writes missing", tally.acknowledged_missing, "writes", "<= 0"),
        Figure("conservation violations", tally.conservation_violations, "findings", "<= 0"),
        Figure("crossed books", tally.crossed_books, "findings", "<= 0"),
        Figure("resting IOCs", tally.resting_iocs, "findings", "<= 0"),
        Figure("escrow differing from open orders", tally.escrow_mismatches, "", "<= 0"),
        Figure("orders placed twice", tally.placed_twice, "orders", "<= 0"),
        Figure("retries refused", tally.retries_refused, "requests", "<= 0"),
        Figure("writes acknowledged", tally.acknowledged, "writes"),
        Figure("requests answered", tally.requests, "requests"),
        Figure("mean restart to first answer", mean_restart, "s"),
        Figure("wall time", wall, "s"),
        Figure("server CPU time", tally.server_cpu_seconds, "cpu-s"),
        Figure("bench CPU time (agents, checks)", bench_cpu, "cpu-s"),
        Figure("children CPU time", children.ru_utime + children.ru_stime, "cpu-s"),
    ]
