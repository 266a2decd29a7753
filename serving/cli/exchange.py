"""``creditx`` commands of the ``market`` package: the store, tiers, pools, balances,
swaps, trades, exchange rates and the ledger's verification.

Every command works on the store named by ``CREDITX_DATABASE_URL`` (default: a SQLite
file under ``CREDITX_HOME``) unless ``--url`` is given. Domain errors print their message
and exit with status 2; nothing is changed by a refused command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from market.cem.exchange import CreditExchange
    from market.cem.registry import Registry
    from market.cem.tiers import TierManager
    from market.ledger import Ledger

URL = typer.Option(None, "--url", help="store URL; default from CREDITX_DATABASE_URL/HOME")
CONFIG = typer.Option(None, "--config", help="tier/host/instance TOML; default built in")

store_app = typer.Typer(help="Create and migrate the creditx store.", no_args_is_help=True)
tiers_app = typer.Typer(help="Resource tiers, hosts and instances.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
rates_app = typer.Typer(help="Exchange rates between tiers.", no_args_is_help=True)
funds_app = typer.Typer(help="Money held by instances.", no_args_is_help=True)


def _store_url(url: str | None) -> str:
    from serving.settings import get_settings

    settings = get_settings()
    if url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    return url or settings.ledger_url


def _config_path(config: Path | None) -> Path | None:
    from serving.settings import get_settings

    return config or get_settings().tiers_config


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _check_toml(config: Path | None) -> None:
    # Before the store libraries load: a missing or unparsable file fails in a second.
    import tomllib

    if config is None:
        return
    try:
        tomllib.loads(config.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise _fail(RuntimeError(f"cannot read tier config {config}: {reason}")) from exc


@contextmanager
def _refusals() -> Iterator[None]:
    from market.errors import ExchangeError
    from market.ledger import LedgerError

    try:
        yield
    except (ExchangeError, LedgerError) as exc:
        raise _fail(exc) from exc


@contextmanager
def _market(url: str | None) -> Iterator[tuple[Ledger, TierManager, CreditExchange, Registry]]:
    from market.cem.exchange import CreditExchange
    from market.cem.registry import Registry
    from market.clock import system_clock
    from market.ledger import Ledger, SqlStore
    from market.migrations import current

    store_url = _store_url(url)
    if current(store_url) is None:
        raise _fail(RuntimeError(f"no creditx store at {store_url}: run `creditx store init`"))
    store = SqlStore(store_url)
    registry = Registry(store.engine)
    ledger = Ledger(store, system_clock)
    try:
        tiers = registry.load()
        yield ledger, tiers, CreditExchange(ledger, tiers, system_clock, registry), registry
    finally:
        ledger.close()


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)


def _credits(milli: int) -> str:
    whole, part = divmod(abs(milli), 1000)
    return f"{'-' if milli < 0 else ''}{whole:,}.{part:03d}"


def _load(url: str | None, config: Path | None) -> None:
    from market.cem.registry import Registry
    from market.cem.tiers import load_config
    from market.ledger import Ledger, SqlStore

    with _refusals():
        tiers = load_config(_config_path(config))
    store = SqlStore(_store_url(url))
    try:
        from market.clock import system_clock

        Registry(store.engine).save(tiers)
        tiers.open_accounts(Ledger(store, system_clock))
    finally:
        store.close()
    typer.echo(
        f"loaded {len(tiers.tiers())} tiers, {len(tiers.hosts())} hosts, "
        f"{len(tiers.instances())} instances"
    )


@store_app.command("init")
def store_init(url: str | None = URL, config: Path | None = CONFIG) -> None:
    """Create or migrate the store, then load tiers, hosts and instances from config."""
    _check_toml(config)  # a bad config changes nothing, not even the store
    from market.cem.tiers import load_config

    with _refusals():
        load_config(_config_path(config))
    from serving.migrations import upgrade

    store_url = _store_url(url)
    upgrade(store_url)
    typer.echo(f"store ready at {store_url}")
    _load(url, config)


@tiers_app.command("load")
def tiers_load(url: str | None = URL, config: Path | None = CONFIG) -> None:
    """Load tiers, hosts and instances from config; stored exchange rates are kept."""
    _load(url, config)


@tiers_app.command("show")
def tiers_show(url: str | None = URL) -> None:
    """Show every tier, its hardware, baseline, earn rate and exchange rate."""
    from market.cem.tiers import format_rate

    with _market(url) as (_, tiers, _cem, _reg):
        rows = [
            [
                t.name,
                f"{t.hardware.cpu_ghz} GHz, {t.hardware.memory_gib_per_vcpu} GiB/vCPU, "
                f"{t.hardware.ssd}, {t.hardware.network_gbps} Gb/s",
                f"{t.baseline_bps / 100:g} %",
                _credits(t.earn_rate),
                format_rate(t.exchange_rate),
                len(tiers.hosts(t.name)),
                len(tiers.instances(t.name)),
            ]
            for t in tiers.tiers()
        ]
    _table(
        "tiers",
        ["tier", "hardware", "baseline/vCPU", "credits/vCPU-h", "rate", "hosts", "instances"],
        rows,
    )


def pools(url: str | None = URL) -> None:
    """Show each tier pool's available credits, capacity, headroom and exchange rate."""
    from market.cem.tiers import format_rate

    with _market(url) as (ledger, tiers, _cem, _reg):
        rows = [
            [
                p.tier,
                _credits(p.available),
                _credits(p.capacity),
                _credits(p.headroom),
                format_rate(p.exchange_rate),
            ]
            for p in tiers.pools(ledger)
        ]
    _table("tier pools (credits)", ["tier", "available", "capacity", "headroom", "rate"], rows)


def balances(
    url: str | None = URL,
    prefix: str | None = typer.Option(None, help="only accounts whose id starts with this"),
) -> None:
    """Show account balances (credits in credits, funds in minor units)."""
    with _market(url) as (ledger, _tiers, _cem, _reg):
        accounts = ledger.store.all_accounts()
        rows = [
            [
                account_id,
                accounts[account_id].asset,
                _credits(balance)
                if accounts[account_id].asset.startswith("credits:")
                else f"{balance:,}",
            ]
            for account_id, balance in sorted(ledger.balances(prefix).items())
        ]
    _table("balances", ["account", "asset", "balance"], rows)


def swap(
    source_tier: str,
    destination_tier: str,
    amount: int = typer.Argument(..., help="milli-credits of the source tier"),
    actor: str = typer.Option(..., help="the administrator performing the swap"),
    key: str | None = typer.Option(None, help="idempotency key"),
    url: str | None = URL,
) -> None:
    """Swap pool credits from one tier to another at their exchange rates."""
    with _market(url) as (_, _tiers, cem, _reg), _refusals():
        done = cem.perform_credit_swap(
            source_tier, destination_tier, amount, actor=actor, idempotency_key=key
        )
    typer.echo(
        f"swapped {done.amount_in} milli-credits of {done.source_tier} into "
        f"{done.amount_out} of {done.destination_tier} (remainder {done.remainder} "
        f"value units) as entry {done.entry.id}"
    )


def trade(
    seller: str,
    buyer: str,
    quantity: int = typer.Argument(..., help="milli-credits"),
    price: int = typer.Argument(..., help="minor units per credit; the buyer also pays the fee"),
    actor: str = typer.Option("cem", help="who brokers the trade"),
    key: str | None = typer.Option(None, help="idempotency key"),
    url: str | None = URL,
) -> None:
    """Settle a trade: the seller's credits to the buyer, the buyer's money to the seller."""
    with _market(url) as (_, _tiers, cem, _reg), _refusals():
        done = cem.facilitate_trade(
            seller, buyer, quantity, price, actor=actor, idempotency_key=key
        )
    typer.echo(
        f"{seller} sold {done.quantity} milli-credits of {done.tier} to {buyer} at "
        f"{done.price} a credit for {done.value} (fee {done.fee}) as entry {done.trade_id}"
    )


def accrue(
    instance: str,
    seconds: int = typer.Option(3600, help="length of the interval"),
    cpu: float = typer.Option(..., help="mean CPU utilisation, percent of the instance's vCPUs"),
    key: str | None = typer.Option(None, help="idempotency key"),
    url: str | None = URL,
) -> None:
    """Book one interval of an instance's credits: earn, spend, cap, pool."""
    from market.cem.accounting import BurstableAccountant

    with _market(url) as (ledger, tiers, _cem, _reg), _refusals():
        outcome = BurstableAccountant(ledger, tiers).settle(
            instance, seconds, cpu, idempotency_key=key
        )
    typer.echo(
        f"{instance}: earned {_credits(outcome.earned)}, spent {_credits(outcome.spent)}, "
        f"to pool {_credits(outcome.to_pool)}, from pool {_credits(outcome.from_pool)}, "
        f"throttled {_credits(outcome.throttled)}, balance {_credits(outcome.balance)}"
    )


@funds_app.command("deposit")
def funds_deposit(
    instance: str,
    amount: int = typer.Argument(..., help="minor units"),
    actor: str = typer.Option(..., help="the administrator"),
    key: str | None = typer.Option(None, help="idempotency key"),
    url: str | None = URL,
) -> None:
    """Pay money into an instance's funds."""
    with _market(url) as (_, _tiers, cem, _reg), _refusals():
        entry = cem.deposit_funds(instance, amount, actor=actor, idempotency_key=key)
    typer.echo(f"deposited {amount} into {instance} as entry {entry.id}")


@ledger_app.command("verify")
def ledger_verify(url: str | None = URL) -> None:
    """Replay the journal; check every balance and every asset's conservation sum."""
    with _market(url) as (ledger, _tiers, _cem, _reg):
        report = ledger.verify()
    _table(
        f"ledger: {report.entries} entries, {report.accounts} accounts",
        ["asset", "sum of balances"],
        [[asset, total] for asset, total in report.asset_totals.items()],
    )
    for account_id, (stored, replayed) in sorted(report.balance_mismatches.items()):
        typer.echo(f"MISMATCH {account_id}: stored {stored}, journal gives {replayed}")
    for account_id, balance in sorted(report.negative_accounts.items()):
        typer.echo(f"NEGATIVE {account_id}: {balance}")
    for problem in report.asset_errors:
        typer.echo(f"ASSET {problem}")
    if not report.ok:
        raise _fail(RuntimeError("the ledger does not verify"))
    typer.echo("ledger verified: every balance replays and every asset sums to zero")


@rates_app.command("set")
def rates_set(
    tier: str,
    rate: str = typer.Argument(..., help="decimal, e.g. 2.5"),
    actor: str = typer.Option(..., help="the administrator"),
    reason: str = typer.Option(..., help="why, for the audit record"),
    url: str | None = URL,
) -> None:
    """Set a tier's exchange rate by hand; the change is audited."""
    from market.cem.tiers import format_rate

    with _market(url) as (_, _tiers, cem, _reg), _refusals():
        change = cem.set_exchange_rate(tier, rate, actor=actor, reason=reason)
    typer.echo(
        f"{tier}: exchange rate {format_rate(change.old_rate)} -> "
        f"{format_rate(change.new_rate)} by {actor}"
    )


@rates_app.command("history")
def rates_history(tier: str | None = typer.Option(None), url: str | None = URL) -> None:
    """Show the audited exchange-rate changes."""
    from market.cem.tiers import format_rate

    with _market(url) as (_, _tiers, cem, _reg), _refusals():
        changes = cem.rate_changes(tier)
    _table(
        "exchange-rate changes",
        ["when", "tier", "old", "new", "actor", "reason"],
        [
            [
                c.changed_at.isoformat(),
                c.tier,
                format_rate(c.old_rate),
                format_rate(c.new_rate),
                c.actor,
                c.reason,
            ]
            for c in changes
        ],
    )


def log(
    kind: str | None = typer.Option(None, help="swap or trade"),
    tier: str | None = typer.Option(None),
    instance: str | None = typer.Option(None),
    url: str | None = URL,
) -> None:
    """Show the trade and swap log, filtered by kind, tier and instance."""
    from market.cem.exchange import Swap

    if kind not in (None, "swap", "trade"):
        raise _fail(ValueError(f"--kind must be swap or trade, not {kind!r}"))
    with _market(url) as (_, _tiers, cem, _reg), _refusals():
        records = cem.log(kind, tier=tier, instance=instance)  # type: ignore[arg-type]
    rows = [
        [
            r.entry.created_at.isoformat(),
            "swap",
            f"{r.source_tier} -> {r.destination_tier}",
            f"{r.amount_in} -> {r.amount_out}",
            "",
            "",
        ]
        if isinstance(r, Swap)
        else [
            r.at.isoformat(),
            "trade",
            r.tier,
            r.quantity,
            f"{r.seller} -> {r.buyer}",
            f"{r.price} a credit, {r.value} (fee {r.fee})",
        ]
        for r in records
    ]
    _table("CEM log", ["when", "kind", "tier", "milli-credits", "parties", "price"], rows)


_COMMANDS: tuple[Callable[..., None], ...] = (pools, balances, swap, trade, accrue, log)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root ``creditx`` app."""
    app.add_typer(store_app, name="store")
    app.add_typer(tiers_app, name="tiers")
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(rates_app, name="rates")
    app.add_typer(funds_app, name="funds")
    for command in _COMMANDS:
        app.command(command.__name__)(command)
