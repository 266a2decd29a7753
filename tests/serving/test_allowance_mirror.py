"""The allowance mirror: reads from memory, caught up with the store's feed after each
booking of the service and, for another process's bookings, within ``max_age``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from data.readings import ReadingBatch
from market.cem.live import LiveAccrual
from market.cem.tiers import load_config
from market.clock import ManualClock
from market.ledger import Ledger, SqlStore
from market.migrations import upgrade
from serving.allowance_mirror import AllowanceMirror

T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)


def open_live(url: str) -> LiveAccrual:
    tiers = load_config()
    ledger = Ledger(SqlStore(url), ManualClock(T0))
    tiers.open_accounts(ledger)
    return LiveAccrual(ledger, tiers)


def test_the_mirror_follows_the_feed_of_another_writer_within_its_max_age(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    service, flow = open_live(url), open_live(url)
    now = [100.0]
    mirror = AllowanceMirror(service, max_age=0.5, monotonic=lambda: now[0])
    assert mirror.stale
    assert mirror.catch_up() == 0
    assert mirror.rendered("vm-gold-1") is None

    def book(n: int, cpu: float) -> None:
        start = T0 + n * timedelta(minutes=5)
        batch = ReadingBatch.from_records([("vm-gold-1", start, cpu), ("vm-gold-2", start, cpu)])
        flow.submit(batch, start + timedelta(minutes=6))

    book(0, 0.0)
    now[0] += 0.4
    assert not mirror.stale  # another process's booking is not seen yet
    assert mirror.rendered("vm-gold-1") is None
    now[0] += 0.1
    assert mirror.stale
    assert mirror.catch_up() == 2
    first = json.loads(mirror.rendered("vm-gold-1") or b"{}")
    assert (first["balance"], first["cursor"]) == (4_000, 1)
    book(1, 100.0)
    assert json.loads(mirror.rendered("vm-gold-1") or b"{}")["cursor"] == 1
    assert mirror.catch_up() == 2
    second = json.loads(mirror.rendered("vm-gold-1") or b"{}")
    # 4 vCPUs flat out want 20 credits, earn 4, hold 4: 12 throttled
    assert (second["balance"], second["throttled"], second["last_throttled"]) == (0, True, 12_000)
    assert second["cursor"] == 3
    assert mirror.catch_up() == 0
    service.ledger.close()
    flow.ledger.close()
