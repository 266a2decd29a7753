"""``Ledger``: validate entry requests, stamp them with the injected clock, post them."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from market.ledger._errors import AssetMismatch, InvalidRequest, UnknownAccount
from market.ledger._model import (
    Account,
    AccountKind,
    Entry,
    EntryRequest,
    MetadataValue,
    VerifyReport,
)
from market.ledger._store import EntryQuery, ExtraWrites, Pending, Store
from market.memory import gc_paused

Clock = Callable[[], datetime]
Plan = Callable[[Mapping[str, int]], tuple[Sequence[EntryRequest], ExtraWrites | None]]
"""Entries (and other rows' writes) planned on balances read in their own transaction."""
_LARGE_BATCH = 1000


class Ledger:
    """The double-entry ledger every credit and every unit of money moves through.

    Parameters
    ----------
    store
        Where accounts, balances and the journal live (``SqlStore`` or ``MemoryStore``).
    clock
        Returns the current time, timezone-aware; entries are stamped with it and the
        ledger reads no other clock.
    """

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self._clock = clock
        # Accounts never change once opened, so a cache of them is never stale.
        self._accounts: dict[str, Account] = {}

    # accounts

    def open_account(self, account_id: str, asset: str, kind: AccountKind | str) -> Account:
        """Open an account holding ``asset``; reopening it with the same definition is a no-op.

        Raises
        ------
        AssetMismatch
            If the account exists with another asset or kind.
        """
        return self.open_accounts([(account_id, asset, kind)])[0]

    def open_accounts(
        self, definitions: Iterable[tuple[str, str, AccountKind | str]]
    ) -> list[Account]:
        """Open many accounts in one transaction; see ``open_account``."""
        wanted = [self._account(account_id, asset, kind) for account_id, asset, kind in definitions]
        for account in wanted:
            cached = self._accounts.get(account.id)
            if cached is not None and cached.asset != account.asset:
                raise AssetMismatch(account.id, cached.asset, account.asset)
        self.store.open_accounts(wanted)
        for account in wanted:
            self._accounts[account.id] = account
        return wanted

    def account(self, account_id: str) -> Account:
        """Return an opened account, or raise ``UnknownAccount``."""
        return self._resolve([account_id])[account_id]

    @staticmethod
    def _account(account_id: str, asset: str, kind: AccountKind | str) -> Account:
        for name, value in (("account id", account_id), ("asset", asset)):
            if not isinstance(value, str) or not value or len(value) > 200:
                raise InvalidRequest(f"{name} must be a non-empty string, got {value!r}")
        try:
            account_kind = AccountKind(kind)
        except ValueError:
            raise InvalidRequest(f"unknown account kind {kind!r}") from None
        return Account(account_id, asset, account_kind)

    def _resolve(self, account_ids: Iterable[str]) -> dict[str, Account]:
        ids = set(account_ids)
        missing = ids.difference(self._accounts)
        if missing:
            self._accounts.update(self.store.get_accounts(missing))
            for account_id in sorted(missing):
                if account_id not in self._accounts:
                    raise UnknownAccount(account_id)
        return {a: self._accounts[a] for a in ids}

    # posting

    def post(self, request: EntryRequest, *, writes: ExtraWrites | None = None) -> Entry:
        """Post one entry: all its transfers or none.

        Returns the new entry or, for a repeated idempotency key with the same request,
        the entry first posted under it, without moving anything again.

        Raises
        ------
        UnknownAccount, AssetMismatch
            If a transfer names an account never opened, or accounts of different assets.
        InsufficientBalance
            If an account that may not go negative would end below zero.
        IdempotencyConflict
            If the key was used before for a different request.
        LedgerError
            If ``writes`` is given to a store without SQL tables.
        """
        return self.post_batch([request], writes=writes)[0]

    def post_batch(
        self, requests: Sequence[EntryRequest], *, writes: ExtraWrites | None = None
    ) -> list[Entry]:
        """Post many entries in one transaction, all or nothing, in order.

        Each entry is checked against the balances its predecessors in the batch leave,
        so a batch succeeds exactly when posting its entries one by one would.

        Parameters
        ----------
        requests
            The entries to post.
        writes
            Called with the open SQLAlchemy connection after the entries are written
            and before the commit (``SqlStore`` only): rows of other tables that must
            commit with the entries or not at all. What it raises aborts the whole
            transaction and reaches the caller unchanged; it may run again if the
            transaction is retried.
        """
        if not requests:
            return []
        if len(requests) < _LARGE_BATCH:
            return self._post_batch(requests, writes)
        with gc_paused():
            return self._post_batch(requests, writes)

    def _post_batch(
        self, requests: Sequence[EntryRequest], writes: ExtraWrites | None
    ) -> list[Entry]:
        if not all(isinstance(r, EntryRequest) for r in requests):
            raise InvalidRequest("post_batch takes EntryRequest objects")
        accounts = self._resolve(
            a for r in requests for t in r.transfers for a in (t.source, t.destination)
        )
        return self.store.commit(self._pending(requests, accounts), accounts, writes)

    def post_planned(self, account_ids: Iterable[str], plan: Plan) -> list[Entry]:
        """Plan entries on balances read in the transaction that posts them, and post them.

        The store reads the balances of ``account_ids`` holding them for the
        transaction (PostgreSQL locks their rows, SQLite holds the write lock), calls
        ``plan`` with them, and posts the entries it returns, and runs the writes it
        returns, in that same transaction: no other writer moves a balance between the
        read and the post, so a plan is never made on stale balances.

        Parameters
        ----------
        account_ids
            The accounts whose balances the plan reads; its entries may move only these.
        plan
            Called with the balance of each of ``account_ids``; returns the entries to
            post (without idempotency keys) and, optionally, writes of other rows to
            commit with them (see ``post_batch``). It may run again if the transaction
            is retried.

        Raises
        ------
        UnknownAccount
            If one of ``account_ids`` was never opened.
        InvalidRequest
            If a planned entry moves another account or carries an idempotency key.
        """
        accounts = self._resolve(account_ids)

        def planned(balances: Mapping[str, int]) -> tuple[list[Pending], ExtraWrites | None]:
            requests, writes = plan(balances)
            for request in requests:
                if not isinstance(request, EntryRequest):
                    raise InvalidRequest("a plan returns EntryRequest objects")
                if request.idempotency_key is not None:
                    raise InvalidRequest(
                        "planned entries are booked once by their plan, not by key"
                    )
                for t in request.transfers:
                    for account in (t.source, t.destination):
                        if account not in accounts:
                            raise InvalidRequest(
                                f"a planned entry moves {account!r}, which the plan did not read"
                            )
            return self._pending(requests, accounts), writes

        with gc_paused():
            return self.store.commit_planned(sorted(accounts), planned, accounts)

    def _pending(
        self, requests: Sequence[EntryRequest], accounts: Mapping[str, Account]
    ) -> list[Pending]:
        for request in requests:
            for transfer in request.transfers:
                source = accounts[transfer.source]
                destination = accounts[transfer.destination]
                if source.asset != destination.asset:
                    raise AssetMismatch(destination.id, destination.asset, source.asset)
        created_at = self._now()
        # 128-bit entry ids: a random 64-bit prefix per batch and the position in it, so
        # a batch's ids are unique and consecutive (its index inserts land side by side).
        prefix = os.urandom(8).hex()
        return [
            Pending(
                Entry(
                    id=f"{prefix}{n:016x}",
                    idempotency_key=r.idempotency_key,
                    reason=r.reason,
                    actor=r.actor,
                    created_at=created_at,
                    transfers=r.transfers,
                    metadata=r.metadata,
                ),
                r.fingerprint() if r.idempotency_key is not None else None,
                r.ceilings or None,
            )
            for n, r in enumerate(requests)
        ]

    def _now(self) -> datetime:
        moment = self._clock()
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise InvalidRequest(f"the ledger clock must return an aware datetime, got {moment!r}")
        return moment.astimezone(UTC)

    # reading

    def balance(self, account_id: str) -> int:
        """Return the balance of an opened account."""
        return self.balances_of([account_id])[account_id]

    def balances_of(self, account_ids: Iterable[str]) -> dict[str, int]:
        """Return the balance of each of these opened accounts.

        Raises
        ------
        UnknownAccount
            If one of them was never opened.
        """
        wanted = self._resolve(account_ids)
        return self.store.balances_of(wanted)

    def balances(self, prefix: str | None = None) -> dict[str, int]:
        """Return the balance of every account whose id starts with ``prefix`` (all if None)."""
        return self.store.balances(prefix)

    def entries(
        self,
        *,
        account: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Return journal entries in posting order, filtered.

        Parameters
        ----------
        account
            Only entries with a transfer from or to this account.
        reason
            Only entries posted with this reason.
        since, until
            Only entries created in ``[since, until)``.
        metadata
            Only entries whose metadata holds every one of these key/value pairs.
        limit
            At most this many entries, the earliest first.
        """
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidRequest(f"{name} must be timezone-aware, got {moment!r}")
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise InvalidRequest(f"limit must be a non-negative int, got {limit!r}")
        return self.store.entries(EntryQuery(account, reason, since, until, metadata, limit))

    def verify(self) -> VerifyReport:
        """Replay the journal and check it against the stored balances.

        Checks that every stored balance equals the sum of its replayed transfers, that
        no account that may not go negative is below zero, that every transfer joins
        accounts of one asset, and that every asset's balances sum to exactly zero
        (what mint accounts issued is held somewhere, or burnt).
        """
        accounts = self.store.all_accounts()
        stored = self.store.balances(None)
        replayed: dict[str, int] = defaultdict(int)
        asset_errors: list[str] = []
        count = 0
        for entry in self.store.journal():
            count += 1
            for t in entry.transfers:
                source, destination = accounts.get(t.source), accounts.get(t.destination)
                if source is None or destination is None:
                    asset_errors.append(f"entry {entry.id} names an account never opened")
                elif source.asset != destination.asset:
                    asset_errors.append(
                        f"entry {entry.id} moves {source.asset} into {destination.asset}"
                    )
                replayed[t.source] -= t.amount
                replayed[t.destination] += t.amount
        mismatches = {
            a: (stored.get(a, 0), replayed.get(a, 0))
            for a in set(stored) | set(replayed)
            if stored.get(a, 0) != replayed.get(a, 0)
        }
        totals: dict[str, int] = defaultdict(int)
        for account_id, account in accounts.items():
            totals[account.asset] += stored.get(account_id, 0)
        negative = {a: b for a, b in stored.items() if b < 0 and not accounts[a].may_go_negative}
        return VerifyReport(
            entries=count,
            accounts=len(accounts),
            asset_totals=dict(sorted(totals.items())),
            balance_mismatches=mismatches,
            negative_accounts=negative,
            asset_errors=tuple(asset_errors),
        )

    def close(self) -> None:
        """Release the store."""
        self.store.close()
