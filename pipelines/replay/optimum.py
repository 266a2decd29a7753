"""The ``optimum`` policy: the least value-weighted throttling any policy could reach.

An offline linear programme over the whole trace, with perfect knowledge of every
instance's demand and owner value. Every instance always keeps its own baseline: in
each step it is served ``min(demand, earned)`` of its own earnings whatever else
happens (except in a step where its tier's baselines alone ask more than the hosts
serve: there the programme chooses whose to serve, as the hosts would have to);
what it earns beyond its demand goes to its tier's *stock* of credits, and the
stock serves anyone's demand above baseline. The stock holds at most what its
instances' balance caps and its pool can hold together (nothing any policy stores can
exceed that), credits move between tiers at the tiers' configured exchange rates (value
in, value out), and each tier's hosts serve at most their physical capacity. It
minimises ``sum(value * throttled)``.

Per tier ``k`` and period ``t`` (variables in milli-credits)::

    stock[k, t] = stock[k, t-1] + surplus[k, t] - sum_i served_above_baseline[i, t]
                  - sum_b moved[k -> b, t] + sum_a rate[a] / rate[k] * moved[a -> k, t]
                  - thrown_away[k, t]
    sum_i served_above_baseline[i, t] <= host capacity[k] * steps - baseline served[k, t]
    0 <= served_above_baseline[i, t] <= demand above baseline[i, t]
    0 <= stock[k, t] <= sum of caps[k] + pool capacity[k]

The periods are the replay's 5-minute steps (the exact optimum) when the programme is
small enough, and hours otherwise: an hour lets credits earned late in it serve demand
early in it and its hosts serve an hour's capacity however it falls, so the hourly
programme is a relaxation, a bound no policy can beat that is at most a little below
the exact optimum. The result says which (``method``). HiGHS solves it
(:func:`scipy.optimize.linprog`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from pipelines.replay.errors import ScenarioError
from pipelines.replay.fleet import STEPS_PER_HOUR, ReplayFleet
from pipelines.replay.scenario import Scenario

EXACT_LIMIT = 400_000
"""Most served-above-baseline variables the exact (5-minute) programme may have."""


@dataclass(frozen=True, slots=True)
class _Periods:
    """The fleet summed over periods of ``m`` steps: what the programme is built from."""

    periods: int
    tiers: int
    tier_of: np.ndarray
    excess: np.ndarray  # (n, periods) demand above baseline
    base: np.ndarray  # (n, periods) baseline demand
    base_floor: np.ndarray  # (n, periods) baseline promised (0 where the hosts bind)
    rows: tuple[np.ndarray, np.ndarray]  # (instance, period) with demand above baseline
    free: tuple[np.ndarray, np.ndarray]  # (instance, period) whose baseline is not promised
    host: np.ndarray  # (tiers, periods) host capacity left for what is not promised
    earned_into_stock: np.ndarray  # (tiers, periods) surplus and unpromised baselines
    stock_max: np.ndarray
    stock_start: np.ndarray
    rates: np.ndarray

    @property
    def served(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(instance, period)`` of every served variable: above baseline, then free."""
        return (
            np.concatenate([self.rows[0], self.free[0]]),
            np.concatenate([self.rows[1], self.free[1]]),
        )

    def tier_sum(self, per_instance: np.ndarray) -> np.ndarray:
        """Return ``(tiers, periods)`` sums of an ``(n, periods)`` array."""
        return np.stack([per_instance[self.tier_of == k].sum(axis=0) for k in range(self.tiers)])


def _periods(fleet: ReplayFleet, scenario: Scenario, m: int) -> _Periods:
    n, steps = fleet.demand.shape
    periods = steps // m
    steps = periods * m
    tiers = len(fleet.tier_names)
    demand = fleet.demand[:, :steps]
    earned = fleet.earned[:, None]
    baseline = np.minimum(demand, earned)
    tier_of = fleet.tier_of
    manager = fleet.tier_manager(scenario.fee_bps)
    pool_capacity = np.array([manager.pool_capacity(t) for t in fleet.tier_names], np.int64)
    # Where a tier's baselines alone ask more than its hosts in a step, no baseline is
    # promised: those steps' baselines are served as the programme chooses.
    tier_step = np.stack([baseline[tier_of == k].sum(axis=0) for k in range(tiers)])
    binding = tier_step > fleet.capacity[:, None]
    floor = np.where(binding[tier_of], 0, baseline)
    excess = (demand - baseline).reshape(n, periods, m).sum(axis=2)
    base = baseline.reshape(n, periods, m).sum(axis=2)
    base_floor = floor.reshape(n, periods, m).sum(axis=2)
    free_i, free_t = np.nonzero(base_floor < base)
    free = (free_i, free_t)
    rows_i, cols_t = np.nonzero(excess)
    fixed = base.copy()
    fixed[free] = 0
    free_base = np.zeros((n, periods))
    free_base[free] = base[free]
    surplus = (earned - baseline).reshape(n, periods, m).sum(axis=2)
    shape = _Periods(
        periods=periods,
        tiers=tiers,
        tier_of=tier_of,
        excess=excess,
        base=base,
        base_floor=base_floor,
        rows=(rows_i, cols_t),
        free=free,
        host=np.zeros(0),
        earned_into_stock=np.zeros(0),
        stock_max=np.bincount(tier_of, weights=fleet.cap, minlength=tiers) + pool_capacity,
        stock_start=np.bincount(tier_of, weights=fleet.start_balance, minlength=tiers),
        rates=np.array([t.exchange_rate for t in fleet.tiers], dtype=np.float64),
    )
    return replace(
        shape,
        host=fleet.capacity[:, None] * m - shape.tier_sum(fixed),
        earned_into_stock=shape.tier_sum(surplus) + shape.tier_sum(free_base),
    )


def _balances(p: _Periods, n_vars: int, offsets: tuple[int, int, int]) -> sparse.csr_matrix:
    """Return the stock balance of every tier and period as rows of ``A_eq``."""
    s0, f0, w0 = offsets
    serve_i, serve_t = p.served
    n_x, n_s = serve_i.size, p.tiers * p.periods
    pairs = [(a, b) for a in range(p.tiers) for b in range(p.tiers) if a != b]
    rows, cols, vals = [p.tier_of[serve_i] * p.periods + serve_t], [np.arange(n_x)], [np.ones(n_x)]
    # stock[k, t] - stock[k, t - 1]
    t_all = np.arange(n_s) % p.periods
    later = t_all > 0
    rows += [np.arange(n_s), np.arange(n_s)[later]]
    cols += [s0 + np.arange(n_s), s0 + np.arange(n_s)[later] - 1]
    vals += [np.ones(n_s), -np.ones(int(later.sum()))]
    # moves between tiers at the exchange rates
    t_range = np.arange(p.periods)
    for i, (a, b) in enumerate(pairs):
        moved = f0 + i * p.periods + t_range
        rows += [a * p.periods + t_range, b * p.periods + t_range]
        cols += [moved, moved]
        vals += [np.ones(p.periods), np.full(p.periods, -p.rates[a] / p.rates[b])]
    # thrown away
    rows.append(np.arange(n_s))
    cols.append(w0 + np.arange(n_s))
    vals.append(np.ones(n_s))
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_s, n_vars),
    )


def optimum_lp(fleet: ReplayFleet, scenario: Scenario, steps_per_period: int) -> dict[str, object]:
    """Solve the programme with periods of ``steps_per_period`` steps.

    Returns ``throttled`` ``(n, periods)`` milli-credits, ``thrown_away`` per tier and
    ``cost`` (``sum(value * throttled)``, value x milli-credits).

    Raises
    ------
    ScenarioError
        If HiGHS finds no optimum (it always should: serving nothing is feasible).
    """
    p = _periods(fleet, scenario, steps_per_period)
    serve_i, serve_t = p.served
    n_above, n_x, n_s = p.rows[0].size, serve_i.size, p.tiers * p.periods
    n_f = p.tiers * (p.tiers - 1) * p.periods
    offsets = (n_x, n_x + n_s, n_x + n_s + n_f)
    n_vars = offsets[2] + n_s
    b_eq = p.earned_into_stock.astype(np.float64).reshape(-1)
    b_eq[np.arange(p.tiers) * p.periods] += p.stock_start
    a_ub = sparse.csr_matrix(
        (np.ones(n_x), (p.tier_of[serve_i] * p.periods + serve_t, np.arange(n_x))),
        shape=(n_s, n_vars),
    )
    lower = np.concatenate(
        [np.zeros(n_above), p.base_floor[p.free].astype(np.float64), np.zeros(n_vars - n_x)]
    )
    upper = np.concatenate(
        [
            p.excess[p.rows].astype(np.float64),
            p.base[p.free].astype(np.float64),
            np.repeat(p.stock_max.astype(np.float64), p.periods),
            np.full(n_vars - n_x - n_s, np.inf),
        ]
    )
    cost = np.zeros(n_vars)
    cost[:n_x] = -fleet.value[serve_i].astype(np.float64)
    solved = linprog(
        cost,
        A_ub=a_ub,
        b_ub=p.host.astype(np.float64).reshape(-1),
        A_eq=_balances(p, n_vars, offsets),
        b_eq=b_eq,
        bounds=np.column_stack([lower, upper]),
        method="highs",
    )
    if solved.status != 0:
        raise ScenarioError("optimum", solved.status, f"HiGHS found no optimum: {solved.message}")
    chosen = np.clip(solved.x[:n_x], lower[:n_x], upper[:n_x])
    throttled = np.zeros(p.excess.shape)
    throttled[p.rows] += p.excess[p.rows] - chosen[:n_above]
    throttled[p.free] += p.base[p.free] - chosen[n_above:]
    return {
        "throttled": throttled,
        "thrown_away": solved.x[offsets[2] :].reshape(p.tiers, p.periods).sum(axis=1),
        "cost": float((fleet.value[:, None] * throttled).sum()),
    }


def solve_optimum(
    fleet: ReplayFleet, scenario: Scenario, steps_per_period: int | None = None
) -> dict[str, object]:
    """Solve the optimum at 5-minute steps when small enough, else hourly; see the module.

    ``steps_per_period`` forces a resolution (``1`` exact, ``12`` hourly). The result
    adds ``method`` and ``seconds`` to :func:`optimum_lp`'s.
    """
    began = time.perf_counter()
    if steps_per_period is None:
        above = int(np.count_nonzero(fleet.demand > fleet.earned[:, None]))
        steps_per_period = 1 if above <= EXACT_LIMIT else STEPS_PER_HOUR
    result = optimum_lp(fleet, scenario, steps_per_period)
    result["method"] = (
        "exact linear programme at 5-minute steps (HiGHS)"
        if steps_per_period == 1
        else f"linear programme over {steps_per_period}-step periods, a relaxation (HiGHS)"
    )
    result["steps_per_period"] = steps_per_period
    result["seconds"] = time.perf_counter() - began
    return result
