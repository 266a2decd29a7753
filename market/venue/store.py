"""The venue's rows in the store: orders, trades and auction results, as driver-level SQL.

The venue (:mod:`market.venue.handling`) decides what to write; this module turns its
orders and trades into rows of the ``market_*`` tables (:mod:`market.venue.tables`)
and the SQL that writes them inside the ledger transaction that settles them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from operator import add, is_, itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from market.clock import to_micros
from market.errors import MarketError
from market.venue import tables as schema
from market.venue.orders import Order, Trade

t_trades = schema.trades
_FIRST_TEN = itemgetter(slice(0, 10))
_SELLER_VALUE = itemgetter(12)


def create_market_tables(engine: Engine) -> None:
    """Bring the store to the newest schema, venue tables (``market_*``) included."""
    from market.migrations import upgrade

    upgrade(engine)


def bulk_sql(engine: Engine, table: sa.Table, *, upsert: bool) -> str:
    """Return a driver-level insert of every column of ``table``, in column order.

    With ``upsert`` a row whose key exists is updated instead (SQLite and PostgreSQL
    share the ``ON CONFLICT ... DO UPDATE`` syntax); without it such a row is kept as
    it is, since it was written by the first posting of the same settlement.
    """
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise MarketError(f"the venue needs SQLite or PostgreSQL, not {engine.dialect.name}")
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    columns = [c.name for c in table.columns]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(mark for _ in columns)})"
    )
    if upsert:
        keys = [c.name for c in table.primary_key.columns]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
        sql += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    else:
        sql += " ON CONFLICT DO NOTHING"
    return sql


def trade_log_sql(engine: Engine) -> str:
    """Return the driver-level insert of trade-log rows (``market_trades``) on ``engine``.

    Run it with :func:`trade_log_rows` as ``connection.exec_driver_sql(sql, rows)``
    inside a ledger transaction (``Ledger.post_batch(..., writes=...)``); a row whose
    trade id exists is kept, since the first posting of the same settlement wrote it.
    """
    return bulk_sql(engine, t_trades, upsert=False)


def trade_log_writes(
    engine: Engine, trades: Sequence[Trade], *, auction_at: datetime | None = None
) -> Callable[[Connection], None]:
    """Return the writes of ``trades``' trade-log rows, to commit with their settlement.

    Pass the result as ``Ledger.post_batch(..., writes=...)`` (the venue does): the rows
    commit with the entry that settles the trades, or not at all. ``auction_at`` as in
    :func:`trade_log_rows`. A row whose trade id exists is kept. On PostgreSQL a large
    batch streams in by ``COPY``.
    """
    rows = trade_log_rows(trades, auction_at=auction_at)
    if engine.dialect.name == "postgresql" and len(rows) >= _PG_COPY_FROM:
        first_id = rows[0][0]

        def copy_rows(conn: Connection) -> None:
            # COPY streams the rows in one round trip but has no ON CONFLICT rule: the
            # rows of a settlement posted again (they commit together, so its first
            # row is there) go through a staging table
            replayed = conn.exec_driver_sql(_PG_ANY_TRADE, (first_id,)).scalar()
            if replayed:
                conn.exec_driver_sql(_PG_STAGE_TRADES)
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(_PG_COPY_STAGED_TRADES if replayed else _PG_COPY_TRADES) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.close()
            if replayed:
                conn.exec_driver_sql(_PG_INSERT_STAGED_TRADES)

        return copy_rows
    sql = trade_log_sql(engine)

    def write(conn: Connection) -> None:
        if rows:
            conn.exec_driver_sql(sql, rows)

    return write


# From this many rows on, PostgreSQL takes trade rows by COPY rather than one by one.
_PG_COPY_FROM = 64
_TRADE_COLUMNS = ", ".join(c.name for c in t_trades.columns)
_PG_STAGE_TRADES = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS staged_{t_trades.name} (LIKE {t_trades.name})"
    " ON COMMIT DELETE ROWS"
)
_PG_ANY_TRADE = f"SELECT EXISTS (SELECT 1 FROM {t_trades.name} WHERE trade_id = %s)"
_PG_COPY_TRADES = f"COPY {t_trades.name} ({_TRADE_COLUMNS}) FROM STDIN"
_PG_COPY_STAGED_TRADES = f"COPY staged_{t_trades.name} ({_TRADE_COLUMNS}) FROM STDIN"
_PG_INSERT_STAGED_TRADES = (
    f"INSERT INTO {t_trades.name} ({_TRADE_COLUMNS}) SELECT {_TRADE_COLUMNS}"
    f" FROM staged_{t_trades.name} ON CONFLICT DO NOTHING"
)


def trade_log_rows(
    trades: Sequence[Trade], *, auction_at: datetime | None = None
) -> list[tuple[Any, ...]]:
    """Return the ``market_trades`` rows of ``trades``, in column order.

    ``auction_at`` is the time of the call auction all of ``trades`` come from (they
    share it and have no aggressor); ``None`` takes each trade's own time and aggressor.
    """
    # the first ten fields of a Trade are the table's first ten columns
    if auction_at is not None:
        if all(map(is_, map(_SELLER_VALUE, trades), repeat(None))):
            # a uniform-price auction's rows all end alike
            ending = (None, None, to_micros(auction_at))
            return list(map(add, map(_FIRST_TEN, trades), repeat(ending)))
        tail = (None, to_micros(auction_at))
        return [(*t[:10], t[12], *tail) for t in trades]
    stamps = {at: to_micros(at) for at in {t.at for t in trades}}
    return [
        (
            *t[:10],
            t.seller_value,
            None if t.aggressor is None else t.aggressor.value,
            stamps[t.at],
        )
        for t in trades
    ]


def order_row(o: Order, auction: bool, escrow: int) -> tuple[Any, ...]:
    """Return the ``market_orders`` row of an order holding ``escrow``, in column order."""
    return (
        o.order_id,
        o.tier,
        o.owner,
        o.side.value,
        o.price,
        o.quantity,
        o.filled,
        o.time_in_force.value,
        None if o.expires_at is None else to_micros(o.expires_at),
        to_micros(o.created_at),
        o.state.value,
        auction,
        o.priority,
        escrow,
    )
