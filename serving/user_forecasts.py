"""The owners' user-defined forecasts, kept in the creditx store."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.clock import from_micros, to_micros
from market.ledger import read_connection
from serving.tables import api_user_forecasts

if TYPE_CHECKING:
    from models.user import UserForecast


def build_user_forecast(document: dict[str, Any]) -> UserForecast:
    """Turn a stored document into a ``models`` user forecast.

    Raises
    ------
    models.InvalidInputError
        If the values do not make a valid forecast of that kind.
    """
    # models.user stands on pandas: loaded with the first user forecast, not at start-up
    from models.user import DailyProfile, WeeklyProfile

    if document["kind"] == "daily":
        return DailyProfile(tuple(document["values"]))
    return WeeklyProfile(tuple(document["values"]))


class UserForecastStore:
    """Set, read and clear user forecasts; reads come from memory."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        with read_connection(engine) as conn:
            rows = list(conn.execute(sa.select(api_user_forecasts)))
        self._documents: dict[str, tuple[dict[str, Any], datetime, str]] = {}
        self._built: dict[str, UserForecast] = {}
        for row in rows:
            document = json.loads(row.document)
            self._documents[row.instance_id] = (
                document,
                from_micros(row.updated_at_us),
                row.updated_by,
            )
            self._built[row.instance_id] = build_user_forecast(document)

    def get(self, instance_id: str) -> tuple[dict[str, Any], datetime, str] | None:
        """Return ``(document, updated_at, updated_by)`` of an instance, or ``None``."""
        return self._documents.get(instance_id)

    def forecast(self, instance_id: str) -> UserForecast | None:
        """Return an instance's user forecast, or ``None``."""
        return self._built.get(instance_id)

    def set(
        self, instance_id: str, document: dict[str, Any], actor: str
    ) -> tuple[dict[str, Any], datetime, str]:
        """Validate and store an instance's user forecast, replacing any previous one."""
        built = build_user_forecast(document)
        now = self._clock()
        with self._lock, self._engine.begin() as conn:
            conn.execute(
                api_user_forecasts.delete().where(api_user_forecasts.c.instance_id == instance_id)
            )
            conn.execute(
                api_user_forecasts.insert().values(
                    instance_id=instance_id,
                    document=json.dumps(document),
                    updated_at_us=to_micros(now),
                    updated_by=actor,
                )
            )
            self._documents[instance_id] = (document, now, actor)
            self._built[instance_id] = built
        return self._documents[instance_id]

    def clear(self, instance_id: str) -> bool:
        """Remove an instance's user forecast; return whether there was one."""
        with self._lock, self._engine.begin() as conn:
            deleted = conn.execute(
                api_user_forecasts.delete().where(api_user_forecasts.c.instance_id == instance_id)
            ).rowcount
            self._documents.pop(instance_id, None)
            self._built.pop(instance_id, None)
        return bool(deleted)
