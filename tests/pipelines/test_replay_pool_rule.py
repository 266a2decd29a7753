"""The live accrual's pool rules are the replay's: the free pool shared pro rata when
it runs short (policy ``pool``), and overflow taken in instance order, so the replay's
step and the live booking share one arithmetic (market.cem.accrual)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from market.cem.accrual import TierSegments, draw_in_order, draw_pro_rata
from pipelines.replay.engine import _draw_in_order, _draw_pro_rata

fleets = st.lists(st.lists(st.integers(0, 50_000), min_size=1, max_size=12), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(wants=fleets, levels=st.lists(st.integers(0, 200_000), min_size=4, max_size=4))
def test_the_pool_rules_draw_what_the_replay_draws(
    wants: list[list[int]], levels: list[int]
) -> None:
    # the replay's fleets hold instances in every tier, grouped by tier
    tier_of = np.concatenate([np.full(len(w), k) for k, w in enumerate(wants)]).astype(np.int64)
    want = np.concatenate([np.array(w, dtype=np.int64) for w in wants])
    level = np.array(levels[: len(wants)], dtype=np.int64)
    starts = np.searchsorted(tier_of, np.arange(len(wants))).astype(np.int64)
    segments = TierSegments.of(tier_of, len(wants))
    assert np.array_equal(
        draw_pro_rata(want, level, segments), _draw_pro_rata(want, level, starts, tier_of)
    )
    assert np.array_equal(
        draw_in_order(want, level, segments), _draw_in_order(want, level, starts, tier_of)
    )
