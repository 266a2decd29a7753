"""The tables of the live accrual (SQLAlchemy Core); migration ``0008_live_accrual``
creates them.

* ``accrual_pending``: readings received and not booked yet, one per
  (instance, interval);
* ``accrual_booked``: every (instance, interval) booked, with what it booked; its key
  is written in the transaction of the ledger entry that books it, so an interval is
  booked exactly once;
* ``accrual_allowances``: per instance, its last booked interval and what it may use
  next, with the feed cursor ``seq`` of its last change;
* ``accrual_feed``: the one row whose ``seq`` hands out the cursors, in commit order;
* ``pool_hours`` (migration ``0011_round_pool``): what each instance drew from and lent
  to the priced pool under an hour's terms, until the next market round settles it;
* ``pool_owed``: what the pool still owes each lender (minor units).
"""

from __future__ import annotations

import sqlalchemy as sa

from market.schema import metadata

pending = sa.Table(
    "accrual_pending",
    metadata,
    sa.Column("instance_id", sa.String(100), primary_key=True),
    sa.Column("interval_us", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("cpu_micro", sa.BigInteger, nullable=False),
    sa.Column("received_at_us", sa.BigInteger, nullable=False),
)

booked = sa.Table(
    "accrual_booked",
    metadata,
    sa.Column("instance_id", sa.String(100), primary_key=True),
    sa.Column("interval_us", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("cpu_micro", sa.BigInteger, nullable=False),
    sa.Column("earned", sa.BigInteger, nullable=False),
    sa.Column("demand", sa.BigInteger, nullable=False),
    sa.Column("spent", sa.BigInteger, nullable=False),
    sa.Column("from_pool", sa.BigInteger, nullable=False),
    sa.Column("to_pool", sa.BigInteger, nullable=False),
    sa.Column("forfeited", sa.BigInteger, nullable=False),
    sa.Column("throttled", sa.BigInteger, nullable=False),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("booking_id", sa.String(32), nullable=False),
)

allowances = sa.Table(
    "accrual_allowances",
    metadata,
    sa.Column("instance_id", sa.String(100), primary_key=True),
    sa.Column("interval_us", sa.BigInteger, nullable=False),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("throttled", sa.SmallInteger, nullable=False),
    sa.Column("last_throttled", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.Index("ix_accrual_allowances_seq", "seq", unique=True),
)

feed = sa.Table(
    "accrual_feed",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

FEED_ROW = 1
"""The id of the one row of ``accrual_feed``."""

pool_hours = sa.Table(
    "pool_hours",
    metadata,
    sa.Column("instance_id", sa.String(100), primary_key=True),
    sa.Column("hour_us", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("drawn", sa.BigInteger, nullable=False),
    sa.Column("lent", sa.BigInteger, nullable=False),
)

pool_owed = sa.Table(
    "pool_owed",
    metadata,
    sa.Column("instance_id", sa.String(100), primary_key=True),
    sa.Column("owed", sa.BigInteger, nullable=False),
)
