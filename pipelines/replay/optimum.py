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

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from pipelines.replay.errors import ScenarioError
from pipelines.replay.fleet import STEPS_PER_HOUR, ReplayFleet
from pipelines.replay.scenario import Scenario

EXACT_LIMIT = 400_000
"""Most served-above-baseline variables the exact (5-minute) programme may have."""


def optimum_lp(fleet: ReplayFleet, scenario: Scenario, steps_per_period: int) -> dict[str, object]:
    """Solve the programme with periods of ``steps_per_period`` steps.

    Returns ``throttled`` ``(n, periods)`` milli-credits, ``thrown_away`` per tier and
    ``cost`` (``sum(value * throttled)``, value x milli-credits).

    Raises
    ------
    ScenarioError
        If HiGHS finds no optimum (it always should: serving nothing is feasible).
    """
    m = steps_per_period
    n, steps = fleet.demand.shape
    periods = steps // m
    steps = periods * m
    tiers = len(fleet.tier_names)
    demand = fleet.demand[:, :steps]
    earned = fleet.earned[:, None]
    baseline = np.minimum(demand, earned)
    excess = (demand - baseline).reshape(n, periods, m).sum(axis=2)
    surplus = (earned - baseline).reshape(n, periods, m).sum(axis=2)
    tier_of = fleet.tier_of
    tier_surplus = np.stack([surplus[tier_of == k].sum(axis=0) for k in range(tiers)])
    manager = fleet.tier_manager(scenario.fee_bps)
    pool_capacity = np.array([manager.pool_capacity(t) for t in fleet.tier_names], np.int64)
    stock_max = np.bincount(tier_of, weights=fleet.cap, minlength=tiers) + pool_capacity
    stock_start = np.bincount(tier_of, weights=fleet.start_balance, minlength=tiers)
    rates = np.array([t.exchange_rate for t in fleet.tiers], dtype=np.float64)

    # Where a tier's baselines alone ask more than its hosts in a step, no baseline is
    # promised: those steps' baselines are served as the programme chooses.
    tier_step = np.stack([baseline[tier_of == k].sum(axis=0) for k in range(tiers)])
    binding = tier_step > fleet.capacity[:, None]
    floor = np.where(binding[tier_of], 0, baseline)
    base = baseline.reshape(n, periods, m).sum(axis=2)
    base_floor = floor.reshape(n, periods, m).sum(axis=2)
    free_i, free_t = np.nonzero(base_floor < base)
    fixed = base.copy()
    fixed[free_i, free_t] = 0
    tier_fixed = np.stack([fixed[tier_of == k].sum(axis=0) for k in range(tiers)])
    host = fleet.capacity[:, None] * m - tier_fixed

    rows_i, cols_t = np.nonzero(excess)
    # served above baseline, then the free baselines: both draw on the stock
    serve_i = np.concatenate([rows_i, free_i])
    serve_t = np.concatenate([cols_t, free_t])
    n_x = serve_i.size
    n_s = tiers * periods
    pairs = [(a, b) for a in range(tiers) for b in range(tiers) if a != b]
    n_f = len(pairs) * periods
    n_w = tiers * periods
    x0, s0, f0, w0 = 0, n_x, n_x + n_s, n_x + n_s + n_f

    def balance_row(k: np.ndarray, t: np.ndarray) -> np.ndarray:
        return k * periods + t

    eq_r, eq_c, eq_v = [], [], []
    eq_r.append(balance_row(tier_of[serve_i], serve_t))
    eq_c.append(x0 + np.arange(n_x))
    eq_v.append(np.ones(n_x))
    # stock[k, t] - stock[k, t - 1]
    k_all, t_all = np.divmod(np.arange(n_s), periods)
    eq_r.append(balance_row(k_all, t_all))
    eq_c.append(s0 + np.arange(n_s))
    eq_v.append(np.ones(n_s))
    later = t_all > 0
    eq_r.append(balance_row(k_all[later], t_all[later]))
    eq_c.append(s0 + np.arange(n_s)[later] - 1)
    eq_v.append(-np.ones(int(later.sum())))
    # moves between tiers at the exchange rates
    t_range = np.arange(periods)
    for p, (a, b) in enumerate(pairs):
        cols = f0 + p * periods + t_range
        eq_r += [balance_row(np.full(periods, a), t_range)]
        eq_r += [balance_row(np.full(periods, b), t_range)]
        eq_c += [cols, cols]
        eq_v += [np.ones(periods), np.full(periods, -rates[a] / rates[b])]
    # thrown away
    eq_r.append(np.arange(n_w))
    eq_c.append(w0 + np.arange(n_w))
    eq_v.append(np.ones(n_w))
    n_vars = n_x + n_s + n_f + n_w
    a_eq = sparse.csr_matrix(
        (np.concatenate(eq_v), (np.concatenate(eq_r), np.concatenate(eq_c))),
        shape=(n_s, n_vars),
    )
    # the stock takes what was earned beyond the promised baselines
    free_base = np.zeros((n, periods))
    free_base[free_i, free_t] = base[free_i, free_t]
    tier_free = np.stack([free_base[tier_of == k].sum(axis=0) for k in range(tiers)])
    b_eq = (tier_surplus + tier_free).astype(np.float64).reshape(-1)
    b_eq[np.arange(tiers) * periods] += stock_start
    a_ub = sparse.csr_matrix(
        (np.ones(n_x), (balance_row(tier_of[serve_i], serve_t), x0 + np.arange(n_x))),
        shape=(n_s, n_vars),
    )
    b_ub = host.astype(np.float64).reshape(-1)
    lower = np.concatenate(
        [
            np.zeros(rows_i.size),
            base_floor[free_i, free_t].astype(np.float64),
            np.zeros(n_s + n_f + n_w),
        ]
    )
    upper = np.concatenate(
        [
            excess[rows_i, cols_t].astype(np.float64),
            base[free_i, free_t].astype(np.float64),
            np.repeat(stock_max.astype(np.float64), periods),
            np.full(n_f + n_w, np.inf),
        ]
    )
    cost = np.zeros(n_vars)
    cost[:n_x] = -fleet.value[serve_i].astype(np.float64)
    solved = linprog(
        cost,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=np.column_stack([lower, upper]),
        method="highs",
    )
    if solved.status != 0:
        raise ScenarioError("optimum", solved.status, f"HiGHS found no optimum: {solved.message}")
    chosen = np.clip(solved.x[:n_x], lower[:n_x], upper[:n_x])
    throttled = np.zeros((n, periods))
    throttled[rows_i, cols_t] += excess[rows_i, cols_t] - chosen[: rows_i.size]
    throttled[free_i, free_t] += base[free_i, free_t] - chosen[rows_i.size :]
    return {
        "throttled": throttled,
        "thrown_away": solved.x[w0:].reshape(tiers, periods).sum(axis=1),
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
