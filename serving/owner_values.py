"""The owners' values: what a throttled vCPU-minute costs each instance's owner.

An owner sets it for their instance (``PUT /v1/instances/{id}/owner-value``); the
instance's agent prices every bid and ask from it (``market.agents.valuation``). Stored in the
creditx store, read from the database on every request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.clock import from_micros, to_micros
from market.ledger import read_connection
from serving.tables import api_owner_values


@dataclass(frozen=True, slots=True)
class OwnerValue:
    """An instance's owner value (minor units per credit) and who set it when."""

    instance_id: str
    value: int
    updated_at: datetime
    updated_by: str


class OwnerValueStore:
    """Set, read and clear owners' values."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock

    def get(self, instance_id: str) -> OwnerValue | None:
        """Return an instance's owner value, or ``None`` when its owner set none."""
        table = api_owner_values
        with read_connection(self._engine) as conn:
            row = conn.execute(sa.select(table).where(table.c.instance_id == instance_id)).first()
        if row is None:
            return None
        return OwnerValue(
            row.instance_id, int(row.value), from_micros(row.updated_at_us), row.updated_by
        )

    def values(self) -> dict[str, int]:
        """Return every owner value set, by instance."""
        table = api_owner_values
        with read_connection(self._engine) as conn:
            rows = conn.execute(sa.select(table.c.instance_id, table.c.value)).all()
        return {r.instance_id: int(r.value) for r in rows}

    def set(self, instance_id: str, value: int, actor: str) -> OwnerValue:
        """Store an instance's owner value, replacing any previous one."""
        table = api_owner_values
        now = self._clock()
        with self._engine.begin() as conn:
            conn.execute(table.delete().where(table.c.instance_id == instance_id))
            conn.execute(
                table.insert().values(
                    instance_id=instance_id,
                    value=value,
                    updated_at_us=to_micros(now),
                    updated_by=actor,
                )
            )
        return OwnerValue(instance_id, value, now, actor)

    def clear(self, instance_id: str) -> bool:
        """Remove an instance's owner value; return whether there was one."""
        table = api_owner_values
        with self._engine.begin() as conn:
            deleted = conn.execute(table.delete().where(table.c.instance_id == instance_id))
        return bool(deleted.rowcount)
