"""Errors of the ``models`` package.

::

    ForecastError                      root: every error this package raises
    ├── NotFittedError (ValueError)    predict or back-test before fit
    ├── InvalidInputError (ValueError) a frame, panel, horizon or quantile that is wrong
    │   └── InvalidQuantileError       a quantile level outside (0, 1)
    └── UnknownInstanceError (KeyError) an instance the forecaster never saw
"""

from __future__ import annotations

from collections.abc import Sequence


class ForecastError(Exception):
    """Root of every error raised by :mod:`models`."""


class NotFittedError(ForecastError, ValueError):
    """A forecaster was asked to predict before :meth:`fit` was called."""

    def __init__(self, forecaster: str) -> None:
        self.forecaster = forecaster
        super().__init__(f"{forecaster} is not fitted: call fit(...) before predict(...)")


class InvalidInputError(ForecastError, ValueError):
    """Input data or an argument is malformed; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class InvalidQuantileError(InvalidInputError):
    """A quantile level does not lie strictly between 0 and 1."""

    def __init__(self, level: object) -> None:
        self.level = level
        super().__init__("quantiles", f"levels must lie strictly between 0 and 1, got {level!r}")


class UnknownInstanceError(ForecastError, KeyError):
    """Instances were asked for that the fitted forecaster never saw."""

    def __init__(self, unique_ids: Sequence[str]) -> None:
        self.unique_ids = tuple(unique_ids)
        shown = ", ".join(self.unique_ids[:5]) + (" ..." if len(self.unique_ids) > 5 else "")
        super().__init__(f"unknown instance(s), not in the fitted fleet: {shown}")

    def __str__(self) -> str:
        return str(self.args[0])
