"""The one decorator of the pipelines' tasks.

No task caches its inputs: hashing large telemetry frames would cost more than the
work. I/O tasks (a snapshot, the MLflow store, the predictions directory) retry on
transient failures only; bad data fails the same way every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE

from pipelines.errors import StoreUnavailableError


def _retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except (OSError, TimeoutError, StoreUnavailableError, sa.exc.OperationalError):
        return True
    except Exception:
        return False
    return False


def pipeline_task(*, io: bool = False, retries: int = 2, retry_delay_seconds: int = 1) -> Any:
    """Return the task decorator: uncached; for ``io``, retried on transient failures."""
    if not io:
        return task(cache_policy=NO_CACHE)
    decorate: Callable[..., Any] = task(
        retries=retries,
        retry_delay_seconds=retry_delay_seconds,
        cache_policy=NO_CACHE,
        retry_condition_fn=_retry_on_io,
    )
    return decorate
