"""The promotion gate: a candidate replaces the champion only if clearly better.

Both models are scored on the same back-test window. The candidate is refused
outright when it is broken (a non-finite score, or too many instances on fallback
models) or when its fleet MASE is worse than seasonal naive's on the same back-test
(a version that loses to the simplest seasonal model is no forecaster); with no
champion yet a sound candidate is promoted; otherwise it must beat
the champion's MASE by the relative ``margin``. Every decision carries its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import InvalidParametersError


@dataclass(frozen=True, slots=True)
class Scorecard:
    """Back-test scores of one model version on one window."""

    version: str
    window: str
    mase: float
    pinball90: float
    coverage90: float
    fallback_share: float = 0.0
    #: Fleet MASE of seasonal naive on the same origins (NaN where not scored).
    seasonal_naive_mase: float = math.nan


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """Whether the candidate becomes champion, and why."""

    promote: bool
    reason: str
    candidate: Scorecard
    champion: Scorecard | None


class PromotionGate(BaseModel):
    """Rules a candidate must pass to replace the champion.

    Parameters
    ----------
    margin
        Relative MASE improvement required: ``candidate <= champion * (1 - margin)``.
    max_fallback_share
        Largest share of instances on fallback models a sound candidate may have.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    margin: float = Field(default=0.02, ge=0.0, lt=1.0)
    max_fallback_share: float = Field(default=0.5, ge=0.0, le=1.0)

    def broken_reason(self, card: Scorecard) -> str | None:
        """Return why a scorecard shows a broken model, or ``None`` if it is sound."""
        for name in ("mase", "pinball90", "coverage90"):
            value = getattr(card, name)
            if not math.isfinite(value):
                return f"its back-test {name} is {value}"
        if not 0.0 <= card.coverage90 <= 1.0:
            return f"its coverage90 {card.coverage90} lies outside [0, 1]"
        if card.fallback_share > self.max_fallback_share:
            return (
                f"{card.fallback_share:.0%} of instances fell back to a simpler model "
                f"(at most {self.max_fallback_share:.0%} allowed)"
            )
        return None

    def baseline_reason(self, card: Scorecard) -> str | None:
        """Return why a scorecard loses to seasonal naive, or ``None`` if it does not."""
        if math.isfinite(card.seasonal_naive_mase) and card.mase > card.seasonal_naive_mase:
            return (
                f"its MASE {card.mase:.4f} is worse than seasonal naive's "
                f"{card.seasonal_naive_mase:.4f} on the same back-test"
            )
        return None

    def refusal(self, card: Scorecard) -> str | None:
        """Return why a candidate is refused whatever the champion, or ``None``."""
        broken = self.broken_reason(card)
        if broken is not None:
            return f"candidate v{card.version} is broken: {broken}"
        baseline = self.baseline_reason(card)
        if baseline is not None:
            return f"candidate v{card.version} refused: {baseline}"
        return None

    def decide(self, candidate: Scorecard, champion: Scorecard | None) -> PromotionDecision:
        """Decide whether ``candidate`` replaces ``champion``.

        Raises
        ------
        InvalidParametersError
            If the two were scored on different back-test windows.
        """
        refused = self.refusal(candidate)
        if refused is not None:
            return PromotionDecision(False, refused, candidate, champion)
        if champion is None:
            return PromotionDecision(
                True,
                f"no champion yet: candidate v{candidate.version} becomes champion "
                f"(MASE {candidate.mase:.4f})",
                candidate,
                None,
            )
        if champion.window != candidate.window:
            raise InvalidParametersError(
                "window",
                f"candidate scored on {candidate.window}, champion on {champion.window}",
            )
        bar = champion.mase * (1.0 - self.margin)
        if candidate.mase <= bar:
            reason = (
                f"candidate v{candidate.version} MASE {candidate.mase:.4f} beats champion "
                f"v{champion.version} MASE {champion.mase:.4f} by more than {self.margin:.1%}"
            )
            return PromotionDecision(True, reason, candidate, champion)
        reason = (
            f"champion v{champion.version} kept: candidate v{candidate.version} MASE "
            f"{candidate.mase:.4f} is not below {bar:.4f} (champion {champion.mase:.4f} "
            f"less {self.margin:.1%})"
        )
        return PromotionDecision(False, reason, candidate, champion)
