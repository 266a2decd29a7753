"""Configuration of the fleet forecaster."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from data.forecasts import QUANTILES

#: Every candidate model name the orchestrator knows, simplest first.
CANDIDATES: tuple[str, ...] = (
    "naive",
    "seasonal_naive",
    "seasonal_median",
    "ets",
    "linear",
    "lightgbm",
    "lightgbm_recent",
)
#: The candidates used unless a configuration names others. Holt-Winters ETS is left
#: out, since it rarely beats the global models in back-tests and its per-instance
#: estimation dominates the run time; so is the ridge, whose place in the median of
#: the best three the seasonal median takes at no fitting cost (Azure day MASE 1.393
#: -> 1.358 and less on each half of the VMs; hour and week within noise).
DEFAULT_CANDIDATES: tuple[str, ...] = (
    "naive",
    "seasonal_naive",
    "seasonal_median",
    "lightgbm",
    "lightgbm_recent",
)


class ForecastConfig(BaseModel):
    """How the :class:`~models.fleet.FleetForecaster` fits, selects and calibrates.

    Parameters
    ----------
    candidates
        Model names to back-test and choose from per instance and horizon bucket; the
        first one is the fallback of last resort and must need the least history.
    calibration_hours
        Back-test window at the end of the history (rolling origins, data before each
        origin only) that chooses the models and calibrates the quantiles.
    horizon_max
        Longest horizon the back-test covers, in hours.
    shrinkage
        Pseudo-count pulling per-instance error quantiles toward the fleet's; an
        instance's errors in a horizon bucket count once per longest step of the bucket.
    selection_shrinkage
        Pseudo-count pulling each instance's back-test score toward the candidate's
        fleet-wide one. An instance's evidence in a horizon bucket counts once per
        bucket-long stretch of the back-test window (its hours over the bucket's longest
        step): many for the next hour, a couple for the next week, fewer on a short
        history, so long horizons and thin histories lean on the fleet's choice
        (0: instances choose on their own evidence).
    point_sources
        Most candidates whose point forecasts' median is in force per instance and
        horizon bucket: the ones with the lowest shrunk back-test error. The largest odd
        number up to it and the number of candidates is used, so that the median is one
        candidate's forecast (1: the best one alone).
    point_tolerance
        Relative margin of the point sources: of the best ``point_sources``, those whose
        shrunk back-test error is within ``1 + point_tolerance`` times the best one's,
        where that is an even number one more up to a day ahead and one fewer beyond it,
        so the median is one candidate's forecast. Where the candidates are about as
        good the median of several errs less than any; where one is clearly better it
        stands alone, not outvoted by worse ones (``None``: always the best
        ``point_sources``). Chosen on the day task of the synthetic and bursty fleets
        (full and cut to 14 days) and confirmed on the Azure trace: day MASE 1.358 ->
        1.352 on Azure, 0.960 -> 0.894 on a bursty fleet of 14 days, hour and week
        within noise.
    naive_guard
        Standard errors by which the point forecast in force (the median of the point
        sources) must beat naive's back-test error, per instance and horizon bucket;
        where it does not, the median of naive and the best two others must, else
        naive is in force (``None``: no guard). The paired differences are winsorised,
        and their mean and its standard error shrunk toward the fleet's as in
        ``selection_shrinkage``, so on a short, bursty or noisy history the worst case
        is the naive forecast. Chosen on bursty fleets of 11 instances with 14 days
        (seeds 0-11: 1 standard error let the hour lose up to 11 % to naive, 2 at most
        0.1 %) and checked on the Azure trace (day MASE 0.812 -> 0.827 of the best
        peer's; without winsorising the differences, 0.893).
    quantile_sources
        Candidates whose quantiles are averaged per instance and horizon bucket: the
        ones with the lowest back-test pinball loss at 0.9 (1: the best one alone).
    quantiles
        Default quantile levels of :meth:`~models.fleet.FleetForecaster.predict`.
    seed
        Seed of every random choice in fitting.
    n_jobs
        Threads a model may use.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    calibration_hours: int = Field(default=336, ge=1)
    horizon_max: int = Field(default=168, ge=1)
    shrinkage: float = Field(default=24.0, ge=0.0)
    selection_shrinkage: float = Field(default=24.0, ge=0.0)
    point_sources: int = Field(default=5, ge=1)
    point_tolerance: float | None = Field(default=0.3, ge=0.0)
    naive_guard: float | None = Field(default=2.0, ge=0.0)
    quantile_sources: int = Field(default=2, ge=1)
    quantiles: tuple[float, ...] = QUANTILES
    seed: int = 0
    n_jobs: int = Field(default=1, ge=1)

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(CANDIDATES))
        if unknown or not value:
            raise ValueError(f"candidates must be a non-empty subset of {CANDIDATES}, got {value}")
        return value

    @field_validator("quantiles")
    @classmethod
    def _valid_levels(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.0 < q < 1.0 for q in value):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {value}")
        return value
