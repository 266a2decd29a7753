"""The ledger's contract on every store: atomic entries, idempotency, bad input, verify."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType

import pytest

from market.clock import ManualClock
from market.ledger import (
    FUNDS,
    MAX_AMOUNT,
    AccountKind,
    AssetMismatch,
    CeilingExceeded,
    EntryRequest,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidAmount,
    InvalidRequest,
    Ledger,
    Transfer,
    UnknownAccount,
    credits_asset,
    escrow_account,
    instance_credits,
    instance_funds,
    mint_account,
    pool_account,
)

MINT = mint_account(FUNDS)
A, B, C = instance_funds("a"), instance_funds("b"), instance_funds("c")


def open_funds(ledger: Ledger, *instances: str) -> None:
    ledger.open_account(MINT, FUNDS, AccountKind.MINT)
    for instance in instances:
        ledger.open_account(instance_funds(instance), FUNDS, AccountKind.INSTANCE)


def deposit(ledger: Ledger, account: str, amount: int, key: str | None = None) -> None:
    ledger.post(EntryRequest((Transfer(MINT, account, amount),), "deposit", "admin", key))


def test_account_ids_come_from_helpers() -> None:
    assert instance_credits("vm-1") == "instance:vm-1:credits"
    assert instance_funds("vm-1") == "instance:vm-1:funds"
    assert pool_account("gold") == "pool:gold"
    assert escrow_account("o-7") == "escrow:order:o-7"
    assert credits_asset("gold") == "credits:gold"
    with pytest.raises(InvalidRequest, match="without ':'"):
        instance_credits("a:b")


def test_multi_leg_entry_moves_every_leg(ledger: Ledger, clock: ManualClock) -> None:
    open_funds(ledger, "a", "b", "c")
    deposit(ledger, A, 1_000)
    clock.advance(timedelta(minutes=1))
    entry = ledger.post(
        EntryRequest(
            (Transfer(A, B, 600), Transfer(A, C, 400)),
            "split",
            "tester",
            metadata={"order": "o-1", "qty": 3},
        )
    )
    assert ledger.balances("instance:") == {A: 0, B: 600, C: 400}
    assert entry.created_at == clock.now
    assert dict(entry.metadata) == {"order": "o-1", "qty": 3}
    assert ledger.entries(account=C) == [entry]
    assert ledger.entries(reason="split", since=clock.now) == [entry]
    assert ledger.entries(until=clock.now - timedelta(seconds=1))[0].reason == "deposit"
    assert ledger.entries(metadata={"order": "o-1"}) == [entry]
    assert ledger.verify().ok


def test_balances_of_named_accounts_only(ledger: Ledger) -> None:
    # "instance:a:funds" is a prefix of no other id here, but "instance:a" would be
    open_funds(ledger, "a", "ab", "b")
    deposit(ledger, A, 700)
    deposit(ledger, instance_funds("ab"), 50)
    assert ledger.balance(A) == 700
    assert ledger.balances_of([A, B, A]) == {A: 700, B: 0}
    assert ledger.balances_of([]) == {}
    with pytest.raises(UnknownAccount, match="instance:zz:funds"):
        ledger.balances_of([A, instance_funds("zz")])
    with pytest.raises(UnknownAccount):
        ledger.balance(instance_funds("zz"))


def test_entry_fails_as_one_and_changes_nothing(ledger: Ledger) -> None:
    open_funds(ledger, "a", "b", "c")
    deposit(ledger, A, 500)
    before = ledger.balances()
    with pytest.raises(InsufficientBalance, match="holds 500, the entry takes 700") as info:
        ledger.post(EntryRequest((Transfer(A, B, 300), Transfer(A, C, 400)), "split", "t"))
    assert (info.value.account, info.value.balance, info.value.requested) == (A, 500, 700)
    assert ledger.balances() == before
    assert len(ledger.entries()) == 1


def test_batch_is_all_or_nothing_in_order(ledger: Ledger) -> None:
    open_funds(ledger, "a", "b", "c")
    deposit(ledger, A, 100)
    ok = EntryRequest((Transfer(A, B, 100),), "pay", "t")
    onward = EntryRequest((Transfer(B, C, 100),), "pay", "t")
    ledger.post_batch([ok, onward])
    assert ledger.balances("instance:") == {A: 0, B: 0, C: 100}
    before = ledger.balances()
    # The second entry would only fit if the third came first: order matters.
    with pytest.raises(InsufficientBalance, match=B):
        ledger.post_batch(
            [
                EntryRequest((Transfer(C, A, 50),), "pay", "t"),
                EntryRequest((Transfer(B, A, 50),), "pay", "t"),
                EntryRequest((Transfer(C, B, 50),), "pay", "t"),
            ]
        )
    assert ledger.balances() == before
    assert len(ledger.entries()) == 3


def test_idempotency_key_replays_or_conflicts(ledger: Ledger, clock: ManualClock) -> None:
    open_funds(ledger, "a", "b")
    request = EntryRequest((Transfer(MINT, A, 250),), "deposit", "admin", "dep-1")
    first = ledger.post(request)
    clock.advance(timedelta(hours=1))
    again = ledger.post(request)
    assert again == first
    assert ledger.balance(A) == 250
    other = EntryRequest((Transfer(MINT, A, 251),), "deposit", "admin", "dep-1")
    with pytest.raises(IdempotencyConflict, match="'dep-1' was already used") as info:
        ledger.post(other)
    assert info.value.entry_id == first.id
    # In a batch: a replay is skipped, a repeat inside the batch replays its first use.
    fresh = EntryRequest((Transfer(MINT, B, 5),), "deposit", "admin", "dep-2")
    results = ledger.post_batch([request, fresh, fresh])
    assert results[0] == first
    assert results[1] == results[2]
    assert ledger.balances("instance:") == {A: 250, B: 5}
    with pytest.raises(IdempotencyConflict):
        ledger.post_batch([EntryRequest((Transfer(MINT, B, 1),), "x", "admin", "dep-2")])
    assert ledger.balances("instance:") == {A: 250, B: 5}
    assert ledger.verify().ok


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, "must be positive"),
        (-5, "must be positive"),
        (1.5, "not float"),
        (float("nan"), "not float"),
        (float("inf"), "not float"),
        (True, "not bool"),
        ("10", "not str"),
        (MAX_AMOUNT + 1, "exceeds the largest"),
    ],
)
def test_bad_amounts_are_refused(amount: object, message: str) -> None:
    with pytest.raises(InvalidAmount, match=message):
        Transfer(A, B, amount)  # type: ignore[arg-type]


def test_bad_requests_change_nothing(ledger: Ledger) -> None:
    open_funds(ledger, "a", "b")
    ledger.open_account(instance_credits("a"), credits_asset("gold"), AccountKind.INSTANCE)
    deposit(ledger, A, 10)
    before = ledger.balances()
    with pytest.raises(UnknownAccount, match="'instance:zz:funds'"):
        ledger.post(EntryRequest((Transfer(A, instance_funds("zz"), 1),), "pay", "t"))
    with pytest.raises(AssetMismatch, match="holds 'credits:gold', not 'funds'"):
        ledger.post(EntryRequest((Transfer(A, instance_credits("a"), 1),), "pay", "t"))
    with pytest.raises(InvalidRequest, match="to itself"):
        Transfer(A, A, 1)
    with pytest.raises(InvalidRequest, match="non-empty tuple"):
        EntryRequest((), "pay", "t")
    with pytest.raises(InvalidRequest, match="reason"):
        EntryRequest((Transfer(A, B, 1),), " ", "t")
    with pytest.raises(InvalidRequest, match="metadata value"):
        EntryRequest((Transfer(A, B, 1),), "pay", "t", metadata={"x": 1.5})  # type: ignore[dict-item]
    with pytest.raises(AssetMismatch, match="holds 'funds', not 'credits:gold'"):
        ledger.open_account(A, credits_asset("gold"), AccountKind.INSTANCE)
    with pytest.raises(InvalidRequest, match="unknown account kind"):
        ledger.open_account("x", FUNDS, "wallet")
    assert ledger.balances() == before
    assert ledger.verify().ok


def test_reopening_an_account_is_a_no_op(ledger: Ledger) -> None:
    open_funds(ledger, "a")
    deposit(ledger, A, 7)
    open_funds(ledger, "a")
    assert ledger.balance(A) == 7


def test_entries_are_immutable(ledger: Ledger) -> None:
    open_funds(ledger, "a")
    entry = ledger.post(EntryRequest((Transfer(MINT, A, 1),), "deposit", "t", metadata={"k": 1}))
    with pytest.raises(AttributeError):
        entry.reason = "other"  # type: ignore[misc]
    assert isinstance(entry.metadata, MappingProxyType)
    with pytest.raises(TypeError):
        entry.metadata["k"] = 2  # type: ignore[index]


def test_only_mint_type_accounts_go_negative(ledger: Ledger) -> None:
    open_funds(ledger, "a")
    ledger.open_account(pool_account("gold"), credits_asset("gold"), AccountKind.POOL)
    ledger.open_account("mint:credits:gold", credits_asset("gold"), AccountKind.MINT)
    ledger.post(
        EntryRequest((Transfer("mint:credits:gold", pool_account("gold"), 9),), "accrue", "t")
    )
    assert ledger.balance("mint:credits:gold") == -9
    report = ledger.verify()
    assert report.asset_totals == {"credits:gold": 0, "funds": 0}
    assert report.ok


def test_clock_must_be_aware(ledger: Ledger) -> None:
    from datetime import datetime

    open_funds(ledger, "a")
    naive = Ledger(ledger.store, lambda: datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(InvalidRequest, match="aware datetime"):
        naive.post(EntryRequest((Transfer(MINT, A, 1),), "deposit", "t"))
    assert ledger.balance(A) == 0


def test_large_batch_settles_replays_and_conflicts_as_one(ledger: Ledger) -> None:
    # Large enough for the bulk path (COPY on PostgreSQL).
    open_funds(ledger, "a", "b", "c")
    deposit(ledger, A, 10_000)
    requests = [
        EntryRequest(
            (Transfer(A, B, 3) if n % 2 == 0 else Transfer(B, C, 2),),
            "settle",
            "auction",
            f"fill-{n}",
            {"n": n, "note": 'quote"d'},
        )
        for n in range(300)
    ]
    expected = {A: 10_000, B: 0, C: 0}
    for request in requests:
        (t,) = request.transfers
        expected[t.source] -= t.amount
        expected[t.destination] += t.amount
    entries = ledger.post_batch(requests)
    assert ledger.balances("instance:") == expected
    assert [e.metadata["n"] for e in entries] == list(range(300))
    assert ledger.entries(reason="settle", limit=2)[1].metadata == {"n": 1, "note": 'quote"d'}
    # The same batch again replays every entry and moves nothing.
    assert ledger.post_batch(requests) == entries
    assert ledger.balances("instance:") == expected
    changed = [*requests[:-1], EntryRequest((Transfer(A, B, 2),), "settle", "auction", "fill-299")]
    with pytest.raises(IdempotencyConflict, match="'fill-299'"):
        ledger.post_batch(changed)
    assert ledger.balances("instance:") == expected
    assert len(ledger.entries(reason="settle")) == 300
    assert ledger.verify().ok


def test_public_surface_is_small_and_sorted() -> None:
    import market.ledger

    names = market.ledger.__all__
    # Sorted isort-style (constants, classes, functions), which ruff's RUF022 enforces.
    assert len(set(names)) == len(names) <= 40
    assert not [n for n in names if n.startswith("_")]
    assert all(hasattr(market.ledger, name) for name in names)


def test_ceilings_are_checked_in_the_same_transaction(ledger: Ledger) -> None:
    open_funds(ledger, "a", "b")
    deposit(ledger, A, 100)
    capped = EntryRequest((Transfer(A, B, 60),), "fill", "t", ceilings={B: 50})
    with pytest.raises(CeilingExceeded, match="at most 50 but would hold 60") as info:
        ledger.post(capped)
    assert (info.value.account, info.value.balance, info.value.ceiling) == (B, 60, 50)
    assert ledger.balances("instance:") == {A: 100, B: 0}
    ledger.post(EntryRequest((Transfer(A, B, 50),), "fill", "t", ceilings={B: 50}))
    assert ledger.balance(B) == 50
    with pytest.raises(InvalidRequest, match="does not touch"):
        EntryRequest((Transfer(A, B, 1),), "fill", "t", ceilings={C: 5})
    with pytest.raises(InvalidRequest, match="must be an int >= 0"):
        EntryRequest((Transfer(A, B, 1),), "fill", "t", ceilings={B: -1})
    plain = EntryRequest((Transfer(A, B, 1),), "fill", "t", "k")
    assert (
        plain.fingerprint()
        != EntryRequest((Transfer(A, B, 1),), "fill", "t", "k", ceilings={B: 99}).fingerprint()
    )


def test_planned_entries_are_planned_on_the_balances_they_post_on(ledger: Ledger) -> None:
    open_funds(ledger, "a", "b")
    deposit(ledger, A, 100)
    seen: list[dict[str, int]] = []

    def sweep(balances: Mapping[str, int]) -> tuple[list[EntryRequest], None]:
        seen.append(dict(balances))
        return [EntryRequest((Transfer(A, B, balances[A]),), "sweep", "t")], None

    entries = ledger.post_planned([A, B], sweep)
    assert seen == [{A: 100, B: 0}]
    assert entries[0].transfers == (Transfer(A, B, 100),)
    assert ledger.balances("instance:") == {A: 0, B: 100}
    assert ledger.post_planned([A], lambda balances: ([], None)) == []
    with pytest.raises(InvalidRequest, match="did not read"):
        ledger.post_planned([A], lambda b: ([EntryRequest((Transfer(B, A, 1),), "x", "t")], None))
    with pytest.raises(InvalidRequest, match="not by key"):
        ledger.post_planned(
            [A, B], lambda b: ([EntryRequest((Transfer(B, A, 1),), "x", "t", "key")], None)
        )
    with pytest.raises(UnknownAccount):
        ledger.post_planned(["instance:ghost:funds"], lambda b: ([], None))
    assert ledger.balances("instance:") == {A: 0, B: 100}
    assert ledger.verify().ok


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrent_plans_never_read_a_stale_balance(
    store: str, clock: ManualClock, request: pytest.FixtureRequest
) -> None:
    # each plan moves all of A's balance: planned on a stale balance, two would move the
    # same credits and the second would fail; held in their transactions, none does
    from concurrent.futures import ThreadPoolExecutor

    from tests.market.conftest import sql_ledger

    url = request.getfixturevalue("sqlite_url" if store == "sqlite" else "pg_url")
    ledger = sql_ledger(url, clock)
    open_funds(ledger, "a", "b")
    moved: list[int] = []

    def sweep(balances: Mapping[str, int]) -> tuple[list[EntryRequest], None]:
        return (
            ([EntryRequest((Transfer(A, B, balances[A]),), "sweep", "t")], None)
            if balances[A]
            else ([], None)
        )

    def work(n: int) -> None:
        for _ in range(15):
            deposit(ledger, A, 7)
            for entry in ledger.post_planned([A, B], sweep):
                moved.append(entry.transfers[0].amount)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert sum(moved) == 4 * 15 * 7
    assert ledger.balances("instance:") == {A: 0, B: 420}
    assert ledger.verify().ok
    ledger.close()
