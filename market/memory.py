"""Pause the cyclic garbage collector around work that allocates many short-lived objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block, restoring its state afterwards.

    A settlement batch or a replayed policy allocates many small objects that all live
    until the block ends and form no reference cycles: the collector's passes over
    them would find nothing to free.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
