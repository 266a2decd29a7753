"""The table of the live exchange's hourly market rounds (SQLAlchemy Core); migration
``0010_market_rounds`` creates it.

``market_rounds`` holds one row per round: how far it got (``stage``), what it read
and offered before its first commit (``plan``: the pools' levels and offers), and,
once done, what it did (``record``); migration ``0011_round_pool`` adds the agents that
sold all they held (``sellers``), the CEM's decision and which of its swaps are booked
(``cem``) and the hour's priced pool (``terms``). Each stage is written in
the transaction that commits the stage's work, so a round killed midway resumes where
it stopped and books nothing twice (:mod:`market.rounds`).
"""

from __future__ import annotations

import sqlalchemy as sa

from market.schema import metadata

rounds = sa.Table(
    "market_rounds",
    metadata,
    sa.Column("round_id", sa.String(64), primary_key=True),
    sa.Column("hour_us", sa.BigInteger, nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("plan", sa.Text, nullable=False),
    sa.Column("record", sa.Text),
    sa.Column("cem", sa.Text),
    sa.Column("sellers", sa.Text),
    sa.Column("terms", sa.Text),
    sa.Column("started_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
)
