"""Named crash points around every commit of the ledger and the venue.

Each commit passes ``<component>.<operation>.before_commit`` with every write of its
transaction done but not committed, and ``<component>.<operation>.after_commit`` once
the commit returned, before any memory or caller learns of it. A crash test installs a
hook (:func:`kill_at`) that kills its own process at one of them, restarts over the
same store and checks what survived. Without a hook a crash point costs one global
read.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

CrashHook = Callable[[str], None]

# the venue's operations, each committing in one transaction
VENUE_OPERATIONS = (
    "place",
    "modify",
    "cancel",
    "expire",
    "auction_submit",
    "auction_cancel",
    "auction_run",
    "limits",
    "restore",
)
CRASH_POINTS: tuple[str, ...] = tuple(
    f"{component}.{operation}.{moment}"
    for component, operations in (
        ("ledger", ("post", "open_accounts")),
        ("venue", VENUE_OPERATIONS),
        ("accrual", ("receive", "book")),
        ("round", ("stage", "finish")),
    )
    for operation in operations
    for moment in ("before_commit", "after_commit")
)

_hook: CrashHook | None = None


def crash_point(name: str) -> None:
    """Pass the crash point ``name``: call the installed hook, if any."""
    hook = _hook
    if hook is not None:
        hook(name)


def set_crash_hook(hook: CrashHook | None) -> CrashHook | None:
    """Install ``hook`` (``None`` removes it); return the hook it replaces."""
    global _hook
    previous, _hook = _hook, hook
    return previous


def kill_at(name: str, hit: int = 1) -> CrashHook:
    """Return a hook that SIGKILLs this process the ``hit``-th time it passes ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`CRASH_POINTS` or ``hit`` is not positive.
    """
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}; one of: {', '.join(CRASH_POINTS)}")
    if hit < 1:
        raise ValueError(f"hit must be at least 1, got {hit}")
    passes = 0

    def hook(point: str) -> None:
        nonlocal passes
        if point == name:
            passes += 1
            if passes == hit:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook
