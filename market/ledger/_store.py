"""The store interface behind ``Ledger``, the balance rules every store applies, and the
in-memory store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from market.ledger._errors import (
    AssetMismatch,
    CeilingExceeded,
    IdempotencyConflict,
    InsufficientBalance,
    LedgerError,
)
from market.ledger._model import Account, Entry, MetadataValue, check_balance_bounds

ExtraWrites = Callable[[Any], None]
"""Writes of another package's rows, run with the ledger's open SQL connection so they
commit or roll back with its entries."""

PlanPending = Callable[[Mapping[str, int]], tuple[Sequence["Pending"], ExtraWrites | None]]
"""Entries validated by the ledger, planned on balances read in their transaction."""


@dataclass(frozen=True, slots=True)
class Pending:
    """An entry validated by the ledger and waiting for its store's transaction."""

    entry: Entry
    fingerprint: str | None
    ceilings: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """Filters of ``Ledger.entries``; ``None`` means no filter."""

    account: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: Mapping[str, MetadataValue] | None = None
    limit: int | None = None

    def matches(self, entry: Entry) -> bool:
        """Return whether ``entry`` passes every filter (``limit`` aside)."""
        if self.reason is not None and entry.reason != self.reason:
            return False
        if self.since is not None and entry.created_at < self.since:
            return False
        if self.until is not None and entry.created_at >= self.until:
            return False
        if self.account is not None and not any(
            self.account in (t.source, t.destination) for t in entry.transfers
        ):
            return False
        return self.metadata is None or all(
            entry.metadata.get(k) == v for k, v in self.metadata.items()
        )


class Store(Protocol):
    """Where a ledger keeps its accounts, balances and journal."""

    def open_accounts(self, accounts: Sequence[Account]) -> None:
        """Open accounts that do not exist; raise ``AssetMismatch`` on a changed one."""

    def get_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        """Return the opened accounts among ``account_ids``."""

    def commit(
        self,
        pending: Sequence[Pending],
        accounts: Mapping[str, Account],
        writes: ExtraWrites | None = None,
    ) -> list[Entry]:
        """Post every pending entry in one transaction, or none; return the entries.

        ``writes``, if given, runs inside that transaction with its connection.
        """

    def commit_planned(
        self, lock: Sequence[str], plan: PlanPending, accounts: Mapping[str, Account]
    ) -> list[Entry]:
        """Read ``lock``'s balances holding them, call ``plan`` with them and commit what
        it returns (entries and writes) in that one transaction; return the entries."""

    def balances(self, prefix: str | None) -> dict[str, int]:
        """Return the stored balance of every account whose id starts with ``prefix``."""

    def balances_of(self, account_ids: Iterable[str]) -> dict[str, int]:
        """Return the stored balance of each of these accounts (those that exist)."""

    def entries(self, query: EntryQuery) -> list[Entry]:
        """Return the entries matching ``query`` in journal order."""

    def journal(self) -> Iterator[Entry]:
        """Yield every entry in journal order."""

    def all_accounts(self) -> dict[str, Account]:
        """Return every opened account."""

    def close(self) -> None:
        """Release the store's resources."""


def apply_entries(
    balances: dict[str, int], pending: Sequence[Pending], accounts: Mapping[str, Account]
) -> None:
    """Apply each entry's transfers to ``balances`` in order, entry by entry.

    An entry's legs take effect together; after each entry no account that may not go
    negative is below zero, or ``InsufficientBalance`` names the first one that is, and
    no account is above a ceiling its entry set, or ``CeilingExceeded`` names it.
    """
    for item in pending:
        before: dict[str, int] = {}
        for transfer in item.entry.transfers:
            for account_id, delta in (
                (transfer.source, -transfer.amount),
                (transfer.destination, transfer.amount),
            ):
                current = balances[account_id]
                before.setdefault(account_id, current)
                balances[account_id] = current + delta
        for account_id, start in before.items():
            after = balances[account_id]
            check_balance_bounds(account_id, after)
            if after < 0 and not accounts[account_id].may_go_negative:
                raise InsufficientBalance(account_id, start, start - after)
        if item.ceilings:
            for account_id, ceiling in item.ceilings.items():
                if balances[account_id] > ceiling:
                    raise CeilingExceeded(account_id, balances[account_id], ceiling)


def resolve_replays(
    pending: Sequence[Pending], existing: Mapping[str, tuple[str | None, Entry]]
) -> tuple[list[Pending], list[Entry | None]]:
    """Split ``pending`` into entries to write and replays of already posted keys.

    ``existing`` maps an idempotency key to its stored fingerprint and entry. Returns the
    entries to write and, per input position, the stored entry it replays (or ``None``).
    A key repeated inside ``pending`` itself replays its first occurrence.
    """
    seen: dict[str, tuple[str | None, Entry]] = dict(existing)
    fresh: list[Pending] = []
    replays: list[Entry | None] = []
    for item in pending:
        key = item.entry.idempotency_key
        if key is not None and key in seen:
            fingerprint, entry = seen[key]
            if fingerprint != item.fingerprint:
                raise IdempotencyConflict(key, entry.id)
            replays.append(entry)
            continue
        if key is not None:
            seen[key] = (item.fingerprint, item.entry)
        fresh.append(item)
        replays.append(None)
    return fresh, replays


def merge_results(fresh: Sequence[Pending], replays: Sequence[Entry | None]) -> list[Entry]:
    """Return, per input position, the replayed entry or the next freshly written one."""
    written = iter(fresh)
    return [entry if entry is not None else next(written).entry for entry in replays]


def check_reopen(stored: Account, wanted: Account) -> None:
    """Raise ``AssetMismatch`` if an account is reopened with another asset or kind."""
    if stored.asset != wanted.asset:
        raise AssetMismatch(stored.id, stored.asset, wanted.asset)
    if stored.kind != wanted.kind:
        raise AssetMismatch(stored.id, f"kind {stored.kind}", f"kind {wanted.kind}")


class MemoryStore:
    """A store in process memory, for simulations; held to the same tests as SQL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._balances: dict[str, int] = {}
        self._journal: list[Entry] = []
        self._by_key: dict[str, tuple[str | None, Entry]] = {}

    def open_accounts(self, accounts: Sequence[Account]) -> None:
        with self._lock:
            for account in accounts:
                stored = self._accounts.get(account.id)
                if stored is not None:
                    check_reopen(stored, account)
            for account in accounts:
                if account.id not in self._accounts:
                    self._accounts[account.id] = account
                    self._balances[account.id] = 0

    def get_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        accounts = self._accounts
        return {a: accounts[a] for a in account_ids if a in accounts}

    def commit(
        self,
        pending: Sequence[Pending],
        accounts: Mapping[str, Account],
        writes: ExtraWrites | None = None,
    ) -> list[Entry]:
        if writes is not None:
            raise LedgerError("the in-memory store holds no SQL tables to write with its entries")
        with self._lock:
            fresh, replays = resolve_replays(pending, self._by_key)
            touched = {
                a for item in fresh for t in item.entry.transfers for a in (t.source, t.destination)
            }
            working = {a: self._balances[a] for a in touched}
            apply_entries(working, fresh, accounts)
            self._balances.update(working)
            for item in fresh:
                self._journal.append(item.entry)
                if item.entry.idempotency_key is not None:
                    self._by_key[item.entry.idempotency_key] = (item.fingerprint, item.entry)
            return merge_results(fresh, replays)

    def commit_planned(
        self, lock: Sequence[str], plan: PlanPending, accounts: Mapping[str, Account]
    ) -> list[Entry]:
        with self._lock:
            pending, writes = plan({a: self._balances[a] for a in lock})
            if writes is not None:
                raise LedgerError(
                    "the in-memory store holds no SQL tables to write with its entries"
                )
            touched = {
                a
                for item in pending
                for t in item.entry.transfers
                for a in (t.source, t.destination)
            }
            working = {a: self._balances[a] for a in touched}
            apply_entries(working, pending, accounts)
            self._balances.update(working)
            self._journal.extend(item.entry for item in pending)
            return [item.entry for item in pending]

    def balances(self, prefix: str | None) -> dict[str, int]:
        with self._lock:
            return {
                a: b for a, b in self._balances.items() if prefix is None or a.startswith(prefix)
            }

    def balances_of(self, account_ids: Iterable[str]) -> dict[str, int]:
        with self._lock:
            balances = self._balances
            return {a: balances[a] for a in account_ids if a in balances}

    def entries(self, query: EntryQuery) -> list[Entry]:
        with self._lock:
            found = [e for e in self._journal if query.matches(e)]
        return found if query.limit is None else found[: query.limit]

    def journal(self) -> Iterator[Entry]:
        with self._lock:
            snapshot = list(self._journal)
        yield from snapshot

    def all_accounts(self) -> dict[str, Account]:
        with self._lock:
            return dict(self._accounts)

    def close(self) -> None:
        return None
