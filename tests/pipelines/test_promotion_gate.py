from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.errors import InvalidParametersError
from pipelines.gate import PromotionGate, Scorecard

scores = st.floats(0.01, 10.0, allow_nan=False)
margins = st.floats(0.0, 0.5)


def _card(version: str, mase: float, window: str = "w", fallback_share: float = 0.0) -> Scorecard:
    return Scorecard(version, window, mase, 0.3, 0.9, fallback_share)


@given(candidate=scores, champion=scores, margin=margins)
def test_promotes_exactly_when_better_by_the_margin(
    candidate: float, champion: float, margin: float
) -> None:
    decision = PromotionGate(margin=margin).decide(_card("2", candidate), _card("1", champion))
    # Brute-force statement of the rule.
    assert decision.promote == (candidate <= champion * (1 - margin))
    assert ("beats" if decision.promote else "kept") in decision.reason


@given(
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    field=st.sampled_from(["mase", "pinball90", "coverage90"]),
    champion=st.none() | scores,
)
def test_never_promotes_a_non_finite_candidate(
    bad: float, field: str, champion: float | None
) -> None:
    values = {"mase": 0.5, "pinball90": 0.3, "coverage90": 0.9, field: bad}
    candidate = Scorecard("2", "w", values["mase"], values["pinball90"], values["coverage90"])
    current = None if champion is None else _card("1", champion)
    decision = PromotionGate().decide(candidate, current)
    assert not decision.promote
    assert f"back-test {field}" in decision.reason


def test_a_sound_first_candidate_becomes_champion() -> None:
    decision = PromotionGate().decide(_card("1", 0.9), None)
    assert decision.promote
    assert "no champion yet" in decision.reason


def test_too_many_fallbacks_make_a_candidate_broken() -> None:
    gate = PromotionGate(max_fallback_share=0.2)
    decision = gate.decide(_card("2", 0.1, fallback_share=0.5), _card("1", 1.0))
    assert not decision.promote
    assert "50% of instances fell back" in decision.reason


def test_scores_on_different_windows_are_not_compared() -> None:
    with pytest.raises(InvalidParametersError, match="window: candidate scored on a"):
        PromotionGate().decide(_card("2", 0.5, window="a"), _card("1", 0.9, window="b"))


@given(candidate=scores, seasonal_naive=scores, champion=st.none() | scores)
def test_never_promotes_a_candidate_worse_than_seasonal_naive(
    candidate: float, seasonal_naive: float, champion: float | None
) -> None:
    card = Scorecard("2", "w", candidate, 0.3, 0.9, seasonal_naive_mase=seasonal_naive)
    current = None if champion is None else _card("1", champion)
    decision = PromotionGate().decide(card, current)
    if candidate > seasonal_naive:
        assert not decision.promote
        assert "worse than seasonal naive" in decision.reason
    else:
        # The bar does not stand in the way of a candidate that clears it.
        assert decision.promote == (champion is None or candidate <= champion * 0.98)


def test_the_first_candidate_worse_than_seasonal_naive_is_refused() -> None:
    card = Scorecard("1", "w", 3.02, 0.3, 0.9, seasonal_naive_mase=2.5)
    decision = PromotionGate().decide(card, None)
    assert not decision.promote
    assert decision.reason == (
        "candidate v1 refused: its MASE 3.0200 is worse than seasonal naive's 2.5000 "
        "on the same back-test"
    )
