"""Every instance's latest allowance in the service's memory, following the store's feed.

``GET /v1/instances/{id}/allowance`` is read by hypervisors every interval for every
instance, so it answers from memory: :class:`AllowanceMirror` catches up with the
allowance feed (the rows whose cursor passed the last one it read) after each batch
this service books, and on a read once its last catch-up is ``max_age`` seconds old,
so a booking made by another process (the ``telemetry`` flow) shows within that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from market.cem.live import Allowance, AllowanceRow, LiveAccrual
from serving.schemas import AllowancePublic


def allowance_public(allowance: Allowance) -> AllowancePublic:
    """Return an allowance as its response body."""
    return AllowancePublic(
        instance_id=allowance.instance_id,
        tier=allowance.tier,
        interval_start=allowance.interval_start,
        next_interval_start=allowance.next_interval_start,
        balance=allowance.balance,
        vcpu_minutes=str(allowance.vcpu_minutes),
        throttled=allowance.throttled,
        last_throttled=allowance.last_throttled,
        earns_per_interval=allowance.earns_per_interval,
        pool_draw=allowance.pool_draw,
        cursor=allowance.seq,
        updated_at=allowance.updated_at,
    )


class AllowanceMirror:
    """The latest allowance of every instance, caught up from the feed.

    Parameters
    ----------
    live
        The live accrual whose store holds the allowances.
    max_age
        Seconds after a catch-up within which a read does not look at the store again.
    monotonic
        The clock of ``max_age``.
    """

    def __init__(
        self,
        live: LiveAccrual,
        *,
        max_age: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._live = live
        self._max_age = max_age
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cursor = 0
        self._caught_up_at: float | None = None
        self._rows: dict[str, AllowanceRow] = {}
        self._rendered: dict[str, bytes] = {}

    @property
    def stale(self) -> bool:
        """Return whether a read should catch up with the store first."""
        caught_up = self._caught_up_at
        return caught_up is None or self._monotonic() - caught_up >= self._max_age

    def catch_up(self) -> int:
        """Read the allowances changed since the last catch-up; return how many."""
        with self._lock:
            changed = self._live.allowance_rows(since=self._cursor)
            for row in changed:
                self._rows[row.instance_id] = row
                self._rendered.pop(row.instance_id, None)
            if changed:
                self._cursor = changed[-1].seq
            self._caught_up_at = self._monotonic()
            return len(changed)

    def rendered(self, instance_id: str) -> bytes | None:
        """Return the JSON of an instance's allowance, or ``None`` before its first."""
        body = self._rendered.get(instance_id)
        if body is None:
            row = self._rows.get(instance_id)
            if row is None:
                return None
            # rendering is pure: a race renders the same bytes twice
            body = allowance_public(self._live.allowance_of(row)).model_dump_json().encode()
            self._rendered[instance_id] = body
        return body
