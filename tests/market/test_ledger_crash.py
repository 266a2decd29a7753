"""Crash test: a child process commits entries as fast as it can and is killed with
SIGKILL mid-stream; after reopening, the journal verifies and holds every entry the
child saw acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from market.clock import ManualClock
from market.ledger import AccountKind, Ledger, SqlStore
from market.migrations import upgrade

CHILD = textwrap.dedent(
    """
    import sys, threading
    from datetime import UTC, datetime
    from market.clock import ManualClock
    from market.ledger import EntryRequest, Ledger, SqlStore, Transfer

    url = sys.argv[1]
    ledger = Ledger(SqlStore(url), ManualClock(datetime(2026, 1, 1, tzinfo=UTC)))
    lock = threading.Lock()

    def work(worker):
        n = 0
        while True:
            n += 1
            legs = (
                Transfer("mint:funds", f"instance:w{worker}:funds", 1 + n % 7),
                Transfer("mint:funds", "fees:funds", 1),
            )
            if n % 10 == 0:
                entries = ledger.post_batch(
                    [EntryRequest(legs, "load", "child", f"w{worker}-{n}-{k}") for k in range(20)]
                )
            else:
                entries = [ledger.post(EntryRequest(legs, "load", "child", f"w{worker}-{n}"))]
            with lock:
                for entry in entries:
                    sys.stdout.write(entry.id + "\\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


def crash_and_reopen(url: str, tmp_path: Path) -> None:
    upgrade(url)
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    setup = Ledger(SqlStore(url), clock)
    setup.open_accounts(
        [("mint:funds", "funds", AccountKind.MINT), ("fees:funds", "funds", AccountKind.FEES)]
        + [(f"instance:w{w}:funds", "funds", AccountKind.INSTANCE) for w in range(3)]
    )
    setup.close()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    acknowledged: list[str] = []
    assert child.stdout is not None
    deadline = time.monotonic() + 120
    try:
        while len(acknowledged) < 400 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(line.strip())
        # Kill it mid-stream, while its threads are still committing.
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    acknowledged += [line for line in rest.splitlines() if len(line) == 32]
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 400

    reopened = Ledger(SqlStore(url), clock)
    report = reopened.verify()
    assert report.ok, report
    journal = {entry.id for entry in reopened.store.journal()}
    missing = [entry_id for entry_id in acknowledged if entry_id not in journal]
    assert not missing, f"{len(missing)} acknowledged entries were lost"
    assert report.asset_totals == {"funds": 0}
    reopened.close()


def test_sigkill_on_sqlite_loses_no_acknowledged_entry(sqlite_url: str, tmp_path: Path) -> None:
    crash_and_reopen(sqlite_url, tmp_path)


@pytest.mark.postgres
def test_sigkill_on_postgres_loses_no_acknowledged_entry(pg_url: str, tmp_path: Path) -> None:
    crash_and_reopen(pg_url, tmp_path)
