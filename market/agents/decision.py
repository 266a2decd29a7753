"""The Virtual Instance Agent: it trades its instance's credits on the instance's forecast.

From its instance's balance, earn rate and cap, its owner's value of a throttled
vCPU-minute and the demand forecast for the next hour, day and week, the agent works
out what it can sell and what it should buy (integer milli-credits), in the tranches
:mod:`market.agents.valuation` prices:

* the **tail**: what the *upper-quantile* (q90) path spares. The agent runs its balance
  forward hour by hour at the upper quantile's need, earning its baseline and clipping
  at the cap, over every hour forecast (up to a week); the lowest point of that path,
  less the safety margin, can go without any later balance dropping below the margin;
* the **band**: what the *median* path spares beyond the tail (credits only the upper
  quantile would use);
* the **need**: the rest of what it holds.

It offers the tranche worth offering at the price it expects: everything it holds
when that price exceeds what its needed credits are worth to it (it would rather be
paid than use them), its band and tail when it exceeds the band's worth, its tail
otherwise. It bids for what the median path lacks over the buy horizon (a day by
default), at the need's worth, or else, at the band's worth, for what the path at the
owner's risk quantile lacks (q50 takes risks, q90 insures); never while it offers,
never beyond its cap. Bids never exceed the owner's value (net of the buyer's fee), its
``max_bid``, or what the owner's budget (and the instance's funds) can escrow; asks
never go below the keep value or ``min_ask``.

The hourly need at hour ``t`` comes from the shortest horizon that covers it: the
hour forecast for the first hour, the day forecast up to hour 24, the week forecast
after. Demand is percent of the instance's vCPUs, so an hour at ``u`` % on ``v``
vCPUs needs ``v * u * 600`` milli-credits (rounded up).

A missing, stale or unusable forecast switches the agent to its **fallback rule**: it
withdraws every ask and offers nothing, and bids only to keep one hour of full
demand (``v * 60`` credits, ``fallback_reserve_hours`` of them) in its balance, at the
need's worth. The
decision says which rule applied and why.

:meth:`Agent.decide` is pure: it reads a plain :class:`AgentState` and returns an
:class:`AgentDecision` whose ``intents`` cancel and place orders; it does no I/O.
:func:`decide_fleet` is the same decision for many agents of one policy at once, over
arrays (:class:`FleetState` in, :class:`FleetDecision` out); :func:`decide_agents` runs
it over agents read one by one (grouped by policy), and :meth:`Agent.decide` on a fleet
of one, so a fleet and a single agent decide alike. The one runner,
:class:`~market.agents.runner.AgentRunner`, runs them over a transport: in process over
a :class:`~market.venue.handling.Venue`, over the HTTP API (``serving.agent_client``),
or over the replay's arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from data.forecasts import HORIZONS, UPPER_COL
from market.agents.forecast import InstanceForecast, quantile_level
from market.agents.valuation import (
    NEED_SHARE,
    Valuation,
    ask_prices,
    band_share,
    bid_prices,
    expected_price,
    tail_share,
    value_credit,
)
from market.clock import to_micros
from market.decisions import (
    DecisionRecord,
    plain,
)
from market.errors import InvalidAgentInput, InvalidPolicy
from market.units import BPS, MILLI_PER_CREDIT
from market.venue.orders import bid_escrow

if TYPE_CHECKING:
    pass

_MILLI_PER_VCPU_PERCENT_HOUR = 600  # one vCPU at 1 % for 60 minutes is 0.6 credits

IntentAction = Literal["place", "cancel"]
SideName = Literal["buy", "sell"]


# inputs


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """One of the instance's orders still in the market, and what it holds in escrow.

    ``escrow`` is credits (milli-credits) for an ask and funds (minor units) for a bid.
    """

    order_id: str
    side: SideName
    price: int
    remaining: int
    escrow: int


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the agent knows of its tier's market.

    ``scarcity`` in ``[0, 1]`` (``1/2`` balanced; see
    :func:`~market.agents.valuation.pool_scarcity`).
    """

    recent_prices: tuple[int, ...] = ()
    scarcity: Fraction = Fraction(1, 2)
    tick_size: int = 1
    fee_bps: int = 0


@dataclass(frozen=True, slots=True)
class AgentState:
    """Everything one decision reads: plain values, no handles.

    ``credits`` and ``funds`` are the free balances (not held in escrow); ``earn_rate``
    is milli-credits per hour and ``cap`` the most the balance holds.
    """

    instance_id: str
    tier: str
    vcpus: int
    now: datetime
    credits: int
    funds: int
    earn_rate: int
    cap: int
    forecast: InstanceForecast | None
    market: MarketView = field(default_factory=MarketView)
    open_orders: tuple[OpenOrder, ...] = ()
    owner_value: int | None = None
    """The value the owner set for this instance (minor units per credit); ``None``: the
    policy's ``throttle_cost``."""


@dataclass(frozen=True, slots=True)
class FleetState:
    """The states of many agents as arrays over ``n`` instances: what :func:`decide_fleet` reads.

    ``holdings`` and ``money`` are each instance's free credits and funds plus what its
    own open orders hold in escrow (they come back when it cancels them); ``vcpus``,
    ``earn_rate`` and ``cap`` are as in :class:`AgentState`. ``need_upper``,
    ``need_risk`` and ``need_mid`` are ``(n, hours)`` milli-credits needed each hour ahead
    at the upper quantile (level ``upper_quantile``), the owner's risk quantile and the
    median (see :func:`hourly_need`). A row whose forecast is not ``usable`` (missing,
    stale or unusable) takes the fallback rule, and its needs are not read. Row ``i``
    trades in ``markets[market[i]]`` and values a credit at ``value[i]`` (its owner's
    value; ``None``: the policy's ``throttle_cost`` for every row).
    """

    holdings: np.ndarray
    money: np.ndarray
    vcpus: np.ndarray
    earn_rate: np.ndarray
    cap: np.ndarray
    usable: np.ndarray
    need_upper: np.ndarray
    need_risk: np.ndarray
    need_mid: np.ndarray
    upper_quantile: Fraction
    market: np.ndarray
    markets: tuple[MarketView, ...]
    value: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.holdings)
        if self.value is not None and (
            np.shape(self.value) != (n,) or (n and int(np.min(self.value)) <= 0)
        ):
            raise InvalidAgentInput("value", np.shape(self.value), f"must be {n} positive ints")
        for name in ("money", "vcpus", "earn_rate", "cap", "usable", "market"):
            if np.shape(getattr(self, name)) != (n,):
                raise InvalidAgentInput(name, np.shape(getattr(self, name)), f"must hold {n} rows")
        hours = np.shape(self.need_upper)
        if len(hours) != 2 or hours[0] != n:
            raise InvalidAgentInput("need_upper", hours, f"must be ({n}, hours)")
        for name in ("need_risk", "need_mid"):
            if np.shape(getattr(self, name)) != hours:
                raise InvalidAgentInput(name, np.shape(getattr(self, name)), f"must be {hours}")
        if n and not 0 <= int(np.min(self.market)) <= int(np.max(self.market)) < len(self.markets):
            raise InvalidAgentInput("market", self.market, "must index markets")
        if n and (np.min(self.holdings) < 0 or np.min(self.money) < 0):
            raise InvalidAgentInput("holdings", "negative", "credits and funds must be >= 0")
        for name in ("vcpus", "earn_rate", "cap"):
            if n and np.min(getattr(self, name)) <= 0:
                raise InvalidAgentInput(name, "non-positive", "must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerPolicy:
    """The owner's settings for its instance's agent.

    Parameters
    ----------
    throttle_cost
        What one throttled vCPU-minute costs the owner, minor units; the bid ceiling.
    risk_quantile
        The forecast quantile the agent buys for (``"q50"`` takes risks, ``"q90"``
        insures); selling is always guarded by the highest quantile forecast.
    safety_margin
        Milli-credits kept beyond the need, plus ``safety_margin_bps`` of the need of
        the next 24 hours.
    max_bid, min_ask
        The highest price it may bid and the lowest it may ask; ``None`` for none.
    budget
        The most minor units it may hold in bids at once; ``None`` for its funds.
    buy_horizon_hours
        How far ahead it buys for.
    max_forecast_age
        An older forecast is stale and the fallback rule applies.
    min_order
        The smallest quantity it offers, milli-credits.
    fallback_reserve_hours
        Hours of full demand the fallback rule keeps in the balance.
    """

    throttle_cost: int = 100
    risk_quantile: str = UPPER_COL
    safety_margin: int = 1_000
    safety_margin_bps: int = 1_000
    max_bid: int | None = None
    min_ask: int | None = None
    budget: int | None = None
    buy_horizon_hours: int = 24
    max_forecast_age: timedelta = timedelta(hours=2)
    min_order: int = 1_000
    fallback_reserve_hours: int = 1

    def __post_init__(self) -> None:
        for name in ("throttle_cost", "buy_horizon_hours", "min_order"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise InvalidPolicy(name, value, "must be a positive int")
        for name in ("safety_margin", "safety_margin_bps", "fallback_reserve_hours"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidPolicy(name, value, "must be a non-negative int")
        for name in ("max_bid", "min_ask", "budget"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise InvalidPolicy(name, value, "must be a non-negative int or None")
        try:
            quantile_level(self.risk_quantile)
        except InvalidAgentInput as exc:
            raise InvalidPolicy("risk_quantile", self.risk_quantile, str(exc)) from None
        if self.max_forecast_age <= timedelta(0):
            raise InvalidPolicy("max_forecast_age", self.max_forecast_age, "must be positive")


# outputs


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """One change the agent wants in the market: place an order, or cancel one.

    ``key`` is an idempotency key unique to the decision and the intent, so a retried
    placement books nothing twice.
    """

    instance_id: str
    action: IntentAction
    key: str
    side: SideName | None = None
    price: int = 0
    quantity: int = 0
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AgentDecision:
    """What one decision worked out, why, and the intents it produced.

    ``outcome`` is ``orders`` (intents to apply), ``hold`` (the market already holds what
    it wants), ``fallback`` (the forecast was missing, stale or unusable), or
    ``blocked`` (an owner limit makes the wanted trade impossible).
    """

    instance_id: str
    tier: str
    at: datetime
    outcome: str
    intents: tuple[OrderIntent, ...]
    spare: int
    lack: int
    reasons: tuple[str, ...]
    inputs: Mapping[str, Any]
    valuation: Valuation | None = None

    def record(self) -> DecisionRecord:
        """Return the decision as a log record with its inputs."""
        detail: dict[str, Any] = {
            "tier": self.tier,
            "spare": self.spare,
            "lack": self.lack,
            "reasons": list(self.reasons),
            "inputs": plain(self.inputs),
            "intents": [
                {
                    "action": i.action,
                    "side": i.side,
                    "price": i.price,
                    "quantity": i.quantity,
                    "order_id": i.order_id,
                    "key": i.key,
                }
                for i in self.intents
            ],
        }
        if self.valuation is not None:
            v = self.valuation
            detail["valuation"] = plain(
                {
                    "value": v.value,
                    "expected_price": v.expected_price,
                    "scarcity": v.scarcity,
                    "bid_value": v.bid_value,
                    "keep_value": v.keep_value,
                    "bid_price": v.bid_price,
                    "ask_price": v.ask_price,
                }
            )
        return DecisionRecord("agent", self.instance_id, self.at, self.outcome, detail)


@dataclass(frozen=True, slots=True)
class FleetDecision:
    """What :func:`decide_fleet` worked out, arrays over the same ``n`` instances.

    ``spare`` and ``lack`` are as in :class:`AgentDecision`. An agent bids
    ``bid_quantity`` at ``bid_price`` where ``bid_quantity > 0`` and asks
    ``ask_quantity`` at ``ask_price`` where ``ask_quantity > 0`` (never both). Where it
    lacks credits, ``bid_price`` is ``0`` when the owner's ``max_bid`` leaves no price on
    the tick, and ``affordable`` is how many of the wanted milli-credits its budget
    escrows (``0``: none). ``lowest_upper``, ``margin_upper`` and ``overflows_cap`` are
    the upper-quantile path's lowest balance, its safety margin and whether it reaches
    the cap.
    """

    spare: np.ndarray
    lack: np.ndarray
    bid_price: np.ndarray
    bid_quantity: np.ndarray
    ask_price: np.ndarray
    ask_quantity: np.ndarray
    affordable: np.ndarray
    lowest_upper: np.ndarray
    margin_upper: np.ndarray
    overflows_cap: np.ndarray
    ask_tranche: np.ndarray
    bid_tranche: np.ndarray


TRANCHES = ("", "need", "band", "tail")
"""The tranche codes of :class:`FleetDecision` (``0``: no order on that side)."""


# the arithmetic


def hourly_need(forecast: InstanceForecast, column: str, vcpus: int) -> list[int]:
    """Return the milli-credits needed each hour ahead, from the shortest covering horizon.

    ``column`` is ``"point"`` or a quantile column. Raises :class:`InvalidAgentInput`
    for a missing column, a length that is not the horizon's, or a value that is not a
    finite percentage in ``[0, 100]``.
    """
    ordered = sorted(
        forecast.horizons.items(), key=lambda kv: HORIZONS.get(kv[0], len(kv[1].point))
    )
    series: list[tuple[float, ...]] = []
    for name, horizon in ordered:
        values = horizon.point if column == "point" else horizon.quantiles.get(column)
        if values is None:
            raise InvalidAgentInput("forecast", name, f"has no {column} column")
        if name in HORIZONS and len(values) != HORIZONS[name]:
            raise InvalidAgentInput(
                "forecast", name, f"has {len(values)} hours, not {HORIZONS[name]}"
            )
        series.append(values)
    need: list[int] = []
    for values in series:
        part = values[len(need) :]
        if not part:
            continue
        try:
            # a NaN or an infinity anywhere makes the sum non-finite
            valid = math.isfinite(sum(part)) and min(part) >= 0 and max(part) <= 100
        except TypeError:
            valid = False
        if not valid:
            bad = next(
                (u for u in part if not (isinstance(u, int | float) and 0 <= u <= 100)), part
            )
            raise InvalidAgentInput("forecast value", bad, "must be a percentage in [0, 100]")
        need += need_from_percent(np.array([part], dtype=np.float64), np.array([vcpus]))[0].tolist()
    return need


def need_from_percent(percent: np.ndarray, vcpus: np.ndarray) -> np.ndarray:
    """Return the milli-credits ``(n, hours)`` hourly demands ``percent`` need.

    Row ``i`` is a demand in percent of ``vcpus[i]`` vCPUs, each hour rounded up to a
    whole milli-credit. The percentages are not checked: see :func:`hourly_need`.
    """
    per_percent = (np.asarray(vcpus, dtype=np.int64) * _MILLI_PER_VCPU_PERCENT_HOUR).astype(
        np.float64
    )
    need = np.ceil(per_percent[:, None] * np.asarray(percent, dtype=np.float64) - 1e-9)
    return need.astype(np.int64)


def balance_path(start: int, earn_rate: int, cap: int, need: Sequence[int]) -> list[int]:
    """Return the balance after each hour: earn, spend ``need``, clip at ``cap``.

    The path may go negative: that is the credits the instance would lack.
    """
    path = balance_paths(
        np.array([start]), np.array([earn_rate]), np.array([cap]), np.array([need], np.int64)
    )
    return [int(b) for b in path[0]]


def balance_paths(
    start: np.ndarray, earn_rate: np.ndarray, cap: np.ndarray, need: np.ndarray
) -> np.ndarray:
    """Return :func:`balance_path` of every row: ``(n, hours)`` from ``(n,)`` and ``(n, hours)``.

    With ``S`` the running sum of ``earn_rate - need``, the balance after hour ``t`` is
    ``S[t] + min(start, cap - max(S[:t + 1]))``: each clip at the cap lowers every later
    balance by what it cut.
    """
    running = np.cumsum(np.asarray(earn_rate, np.int64)[:, None] - need, axis=1)
    if running.shape[1] == 0:
        return running
    highest = np.maximum.accumulate(running, axis=1)
    return running + np.minimum(
        np.asarray(start, np.int64)[:, None], np.asarray(cap, np.int64)[:, None] - highest
    )


def spare_credits(holdings: int, earn_rate: int, cap: int, need: Sequence[int], margin: int) -> int:
    """Return the most milli-credits that can go now with the path staying above ``margin``."""
    lowest = min([holdings, *balance_path(holdings, earn_rate, cap, need)])
    return max(0, lowest - margin)


def lacking_credits(
    holdings: int, earn_rate: int, cap: int, need: Sequence[int], margin: int
) -> int:
    """Return the fewest milli-credits to add now so the path stays above ``margin``."""
    return int(
        _lacking(
            np.array([holdings]),
            np.array([earn_rate]),
            np.array([cap]),
            np.array([need], np.int64).reshape(1, len(need)),
            np.array([margin]),
        )[0]
    )


def _lacking(
    holdings: np.ndarray, earn_rate: np.ndarray, cap: np.ndarray, need: np.ndarray, margin: Any
) -> np.ndarray:
    if need.shape[1] == 0:
        lowest = holdings
    else:
        lowest = balance_paths(holdings, earn_rate, cap, need).min(axis=1)
    return np.maximum(0, margin - lowest)


def _margins(policy: OwnerPolicy, need: np.ndarray) -> np.ndarray:
    # a share of the next day's need: a week's would keep most of the balance idle
    day = need[:, :24].sum(axis=1)
    return policy.safety_margin + day * policy.safety_margin_bps // BPS


def _bid_escrows(quantity: np.ndarray, price: np.ndarray, fee_bps: np.ndarray) -> np.ndarray:
    # market.orders.bid_escrow over arrays: the value at the limit plus the largest fee
    value = quantity * price // MILLI_PER_CREDIT
    return value + value * fee_bps // BPS


def _affordable(
    money: np.ndarray, price: np.ndarray, fee_bps: np.ndarray, quantity: np.ndarray
) -> np.ndarray:
    """Return the most milli-credits, up to ``quantity``, a bid at ``price`` escrows with ``money``.

    The arrays' :func:`affordable_quantity`, bounded by what the agent wants.
    """
    fits = _bid_escrows(quantity, price, fee_bps) <= money
    # escrow grows with quantity: bisect where the whole quantity does not fit, keeping
    # escrow(low) <= money < escrow(high)
    low = np.where(fits, quantity, 0)
    high = np.where(fits, quantity + 1, quantity)
    open_ = high - low > 1
    while open_.any():
        middle = (low + high) // 2
        ok = _bid_escrows(middle, price, fee_bps) <= money
        low = np.where(open_ & ok, middle, low)
        high = np.where(open_ & ~ok, middle, high)
        open_ = high - low > 1
    return np.where((money > 0) & (price > 0), low, 0)


def affordable_quantity(money: int, price: int, fee_bps: int) -> int:
    """Return the most milli-credits a bid at ``price`` can escrow with ``money``."""
    if price <= 0 or money <= 0:
        return 0
    # escrow grows with quantity, so bisect between a quantity that fits and one that
    # does not: beyond ``high`` even the value alone exceeds the money
    low, high = 0, ((money + 1) * MILLI_PER_CREDIT - 1) // price + 1
    while high - low > 1:
        middle = (low + high) // 2
        if bid_escrow(middle, price, fee_bps) <= money:
            low = middle
        else:
            high = middle
    return low


def decide_fleet(policy: OwnerPolicy, fleet: FleetState) -> FleetDecision:
    """Decide for every agent of ``fleet`` under one owner ``policy`` at once.

    Row by row this is the decision :meth:`Agent.decide` takes (the module docstring
    gives the rules); each row values credits at its own ``fleet.value`` where given,
    the policy's ``throttle_cost`` otherwise. Turning what each agent wants into intents
    against its open orders is left to the caller.
    """
    holdings, cap = fleet.holdings, fleet.cap
    n = len(holdings)
    value = (
        np.full(n, policy.throttle_cost, dtype=np.int64)
        if fleet.value is None
        else np.asarray(fleet.value, dtype=np.int64)
    )
    spare, spare_band, lowest_upper, margin_upper, overflows = _spares(policy, fleet)
    lack_need, lack_risk = _lacks(policy, fleet)
    # prices: each tranche's worth at the owner's value, per market (tick, fee)
    ask_price, ask_quantity, bid_price, want, ask_tranche, bid_tranche = (
        np.zeros(n, dtype=np.int64) for _ in range(6)
    )
    for k, view in enumerate(fleet.markets):
        rows = np.flatnonzero(fleet.market == k)
        if not rows.size:
            continue
        (
            ask_price[rows],
            ask_quantity[rows],
            bid_price[rows],
            want[rows],
            ask_tranche[rows],
            bid_tranche[rows],
        ) = _orders_in_market(
            policy,
            view,
            fleet.upper_quantile,
            value[rows],
            holdings[rows],
            fleet.usable[rows],
            overflows[rows],
            (spare[rows], spare_band[rows]),
            (lack_need[rows], lack_risk[rows]),
        )
    # never more than the cap holds: bought credits above it would sit idle
    want = np.minimum(want, np.maximum(0, cap - holdings))
    spendable = fleet.money if policy.budget is None else np.minimum(fleet.money, policy.budget)
    fees = np.array([m.fee_bps for m in fleet.markets], dtype=np.int64)[fleet.market]
    affordable = np.where(
        (want > 0) & (bid_price > 0), _affordable(spendable, bid_price, fees, want), 0
    )
    return FleetDecision(
        spare=spare,
        lack=np.where(ask_quantity > 0, 0, np.where(lack_need > 0, lack_need, lack_risk)),
        bid_price=bid_price,
        bid_quantity=affordable,
        ask_price=ask_price,
        ask_quantity=ask_quantity,
        affordable=affordable,
        lowest_upper=lowest_upper,
        margin_upper=margin_upper,
        overflows_cap=overflows,
        ask_tranche=ask_tranche,
        bid_tranche=np.where(affordable > 0, bid_tranche, 0),
    )


def _spares(policy: OwnerPolicy, fleet: FleetState) -> tuple[np.ndarray, ...]:
    """Return each row's tail, band and tail, lowest upper path, its margin and overflow.

    The upper quantile's path over every hour forecast leaves the tail, the median's
    leaves the band and the tail.
    """
    holdings, earn, cap, usable = fleet.holdings, fleet.earn_rate, fleet.cap, fleet.usable
    n, hours = fleet.need_upper.shape
    margin_upper = _margins(policy, fleet.need_upper)
    if not hours:
        zeros = np.zeros(n, dtype=np.int64)
        return zeros, zeros, holdings, margin_upper, np.zeros(n, dtype=bool)
    path = balance_paths(holdings, earn, cap, fleet.need_upper)
    lowest_upper = path.min(axis=1)
    overflows = usable & (path.max(axis=1) >= cap)
    spare = np.where(usable, np.maximum(0, np.minimum(holdings, lowest_upper) - margin_upper), 0)
    lowest_mid = balance_paths(holdings, earn, cap, fleet.need_mid).min(axis=1)
    margin_mid = _margins(policy, fleet.need_mid)
    spare_band = np.where(
        usable, np.maximum(spare, np.minimum(holdings, lowest_mid) - margin_mid), 0
    )
    return spare, spare_band, lowest_upper, margin_upper, overflows


def _lacks(policy: OwnerPolicy, fleet: FleetState) -> tuple[np.ndarray, np.ndarray]:
    """Return what each row lacks at the median and at the owner's risk quantile.

    Over the buy horizon; the fallback reserve where no forecast can be read.
    """
    holdings, earn, cap = fleet.holdings, fleet.earn_rate, fleet.cap
    horizon = policy.buy_horizon_hours
    buy_mid, buy_risk = fleet.need_mid[:, :horizon], fleet.need_risk[:, :horizon]
    lack_need = _lacking(holdings, earn, cap, buy_mid, _margins(policy, buy_mid))
    lack_risk = np.maximum(
        lack_need, _lacking(holdings, earn, cap, buy_risk, _margins(policy, buy_risk))
    )
    fallback = ~fleet.usable
    if fallback.any():
        reserve = np.repeat(
            (fleet.vcpus[fallback] * 60 * MILLI_PER_CREDIT)[:, None],
            policy.fallback_reserve_hours,
            axis=1,
        )
        lack_need[fallback] = _lacking(
            holdings[fallback], earn[fallback], cap[fallback], reserve, 0
        )
        lack_risk[fallback] = lack_need[fallback]
    return lack_need, lack_risk


def _orders_in_market(
    policy: OwnerPolicy,
    view: MarketView,
    upper: Fraction,
    value: np.ndarray,
    holdings: np.ndarray,
    usable: np.ndarray,
    overflows: np.ndarray,
    spares: tuple[np.ndarray, np.ndarray],
    lacks: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, ...]:
    """Return each row's ask (price, quantity), bid (price, wanted quantity) and tranches.

    A row offers the tranche worth offering at the price it expects (see
    :mod:`market.agents.valuation`): everything it holds, its band and tail, or its tail; it
    bids for what its median lacks at the need's worth, or else for what its risk
    quantile lacks at the band's worth, and never bids while it offers.
    """
    spare_tail, spare_band = spares
    lack_need, lack_risk = lacks
    tick, fee = view.tick_size, view.fee_bps
    asks = {
        "need": ask_prices(value, NEED_SHARE, tick_size=tick, min_ask=policy.min_ask),
        "band": ask_prices(value, band_share(upper), tick_size=tick, min_ask=policy.min_ask),
        "tail": ask_prices(
            value, tail_share(upper), tick_size=tick, min_ask=policy.min_ask, worthless=overflows
        ),
    }
    expected = _expected_prices(view, value)
    minimum = policy.min_order
    sell_all = usable & (expected > asks["need"]) & (holdings >= minimum)
    sell_band = usable & ~sell_all & (expected > asks["band"]) & (spare_band >= minimum)
    sell_tail = usable & ~sell_all & ~sell_band & (spare_tail >= minimum)
    ask_quantity = np.select(
        [sell_all, sell_band, sell_tail], [holdings, spare_band, spare_tail], 0
    ).astype(np.int64)
    ask_price = np.select(
        [sell_all, sell_band, sell_tail], [asks["need"], asks["band"], asks["tail"]], 0
    ).astype(np.int64)
    bids = {
        share: bid_prices(value, share, fee_bps=fee, tick_size=tick, max_bid=policy.max_bid)
        for share in (NEED_SHARE, band_share(upper))
    }
    offering = ask_quantity > 0
    buy_need = ~offering & (lack_need > 0)
    buy_band = ~offering & ~buy_need & (lack_risk > 0)
    bid_price = np.select(
        [buy_need, buy_band], [bids[NEED_SHARE], bids[band_share(upper)]], 0
    ).astype(np.int64)
    wanted = np.select([buy_need, buy_band], [lack_need, lack_risk], 0)
    want = np.where(wanted > 0, np.maximum(wanted, minimum), 0).astype(np.int64)
    ask_tranche = np.select([sell_all, sell_band, sell_tail], [1, 2, 3], 0)
    bid_tranche = np.select([buy_need, buy_band], [1, 2], 0)
    return ask_price, ask_quantity, bid_price, want, ask_tranche, bid_tranche


def _expected_prices(view: MarketView, value: np.ndarray) -> np.ndarray:
    # Which tranche to offer is a choice, not a price: floats serve it; every price an
    # agent sets is exact. Per unit of value when the tier has no price yet.
    if view.recent_prices:
        anchor = float(expected_price(view.recent_prices, 1, view.scarcity))
        return np.full(len(value), anchor)
    return value * float(expected_price((), 1, view.scarcity))


def _check_state(state: AgentState) -> None:
    for name in ("vcpus", "earn_rate", "cap"):
        value = getattr(state, name)
        if type(value) is not int or value <= 0:
            raise InvalidAgentInput(name, value, "must be a positive int")
    for name in ("credits", "funds"):
        value = getattr(state, name)
        if type(value) is not int or value < 0:
            raise InvalidAgentInput(name, value, "must be a non-negative int")
    if state.now.tzinfo is None:
        raise InvalidAgentInput("now", state.now, "must be timezone-aware")
    for order in state.open_orders:
        if order.side not in ("buy", "sell") or order.remaining <= 0 or order.escrow < 0:
            raise InvalidAgentInput("open order", order, "needs a side, quantity and escrow")


def _sorted_columns(forecast: InstanceForecast) -> tuple[str, ...]:
    """Return the forecast's quantile columns, lowest level first."""
    names = frozenset(c for h in forecast.horizons.values() for c in h.quantiles)
    return _order_columns(names)


@functools.lru_cache(maxsize=256)
def _order_columns(names: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=quantile_level))


@dataclass(frozen=True, slots=True)
class _Reading:
    """What one decision reads of an agent's state: what it holds and what it needs."""

    value: int
    holdings: int
    money: int
    problem: str | None
    upper: str
    level: Fraction
    need_high: list[int]
    need_risk: list[int]
    need_mid: list[int]


def _read(policy: OwnerPolicy, state: AgentState) -> _Reading:
    _check_state(state)
    # credits and funds held by the agent's own orders come back when it cancels them
    holdings = state.credits + sum(o.escrow for o in state.open_orders if o.side == "sell")
    money = state.funds + sum(o.escrow for o in state.open_orders if o.side == "buy")
    value = policy.throttle_cost if state.owner_value is None else state.owner_value
    needs: dict[str, list[int]] = {}
    problem = _forecast_problem(policy, state, needs)
    if problem is not None:
        return _Reading(value, holdings, money, problem, "", Fraction(9, 10), [], [], [])
    assert state.forecast is not None
    columns = _sorted_columns(state.forecast)
    upper = columns[-1]
    if quantile_level(policy.risk_quantile) > quantile_level(upper):
        upper = policy.risk_quantile
    return _Reading(
        value,
        holdings,
        money,
        None,
        upper,
        quantile_level(upper),
        needs[upper],
        needs[policy.risk_quantile],
        needs["q50" if "q50" in columns else "point"],
    )


def _forecast_problem(
    policy: OwnerPolicy, state: AgentState, needs: dict[str, list[int]]
) -> str | None:
    forecast = state.forecast
    if forecast is None or not forecast.horizons:
        return "no forecast for the instance"
    age = state.now - forecast.generated_at
    if age > policy.max_forecast_age:
        return f"forecast is stale: generated {age} ago"
    try:
        columns = _sorted_columns(forecast)
        if policy.risk_quantile not in columns:
            return f"forecast has no {policy.risk_quantile} quantile"
        for name, horizon in forecast.horizons.items():
            # a NaN anywhere, even in a column not read, means the forecast is broken
            for values in (horizon.point, *horizon.quantiles.values()):
                if not math.isfinite(sum(values)):
                    return f"forecast unusable: the {name} forecast holds NaN or infinity"
        # only the columns a decision reads: the upper, the risk level's, the median
        used = {columns[-1], policy.risk_quantile, "q50" if "q50" in columns else "point"}
        for column in used:
            needs[column] = hourly_need(forecast, column, state.vcpus)
    except (InvalidAgentInput, TypeError) as exc:
        return f"forecast unusable: {exc}"
    return None


def decide_agents(
    states: Sequence[AgentState], policy_of: Callable[[str], OwnerPolicy]
) -> list[AgentDecision]:
    """Decide for each agent of ``states`` under its owner's policy (``policy_of(instance_id)``).

    Agents that share a policy, a forecast length and an upper quantile decide together
    in one :func:`decide_fleet` call; each row of it is the decision that agent would
    take alone, turned into intents against its open orders.

    Raises
    ------
    InvalidAgentInput
        For a state out of its domain (negative balances, a naive time, ...). A
        forecast that cannot be used is not an error: the fallback rule applies.
    """
    policies = [policy_of(s.instance_id) for s in states]
    readings = [_read(p, s) for p, s in zip(policies, states, strict=True)]
    groups: dict[tuple[OwnerPolicy, Fraction, int], list[int]] = {}
    for i, (policy, reading) in enumerate(zip(policies, readings, strict=True)):
        groups.setdefault((policy, reading.level, len(reading.need_high)), []).append(i)
    decisions: list[AgentDecision | None] = [None] * len(states)
    for (policy, level, hours), rows in groups.items():
        views = list(dict.fromkeys(states[i].market for i in rows))
        index = {view: k for k, view in enumerate(views)}
        ints = functools.partial(np.array, dtype=np.int64)
        part = [readings[i] for i in rows]
        d = decide_fleet(
            policy,
            FleetState(
                holdings=ints([r.holdings for r in part]),
                money=ints([r.money for r in part]),
                vcpus=ints([states[i].vcpus for i in rows]),
                earn_rate=ints([states[i].earn_rate for i in rows]),
                cap=ints([states[i].cap for i in rows]),
                usable=np.array([r.problem is None for r in part], dtype=bool),
                need_upper=ints([r.need_high for r in part]).reshape(len(rows), hours),
                need_risk=ints([r.need_risk for r in part]).reshape(len(rows), hours),
                need_mid=ints([r.need_mid for r in part]).reshape(len(rows), hours),
                upper_quantile=level,
                market=ints([index[states[i].market] for i in rows]),
                markets=tuple(views),
                value=ints([r.value for r in part]),
            ),
        )
        for row, i in enumerate(rows):
            decisions[i] = _decision(policy, states[i], readings[i], d, row)
    return [d for d in decisions if d is not None]


def _decision(
    policy: OwnerPolicy, state: AgentState, reading: _Reading, d: FleetDecision, row: int
) -> AgentDecision:
    """Return row ``row`` of ``d``, one agent's decision, with its reasons and intents."""
    inputs = _inputs(policy, state, reading, d, row)
    spare, lack = int(d.spare[row]), int(d.lack[row])
    valuation = _value(policy, state, reading, d, row)
    reasons: list[str] = []
    if reading.problem is not None:
        reasons.append(f"fallback: {reading.problem}; no asks, bids only for a reserve")
        outcome = "fallback"
    else:
        outcome = "orders"
    bid = _bid(policy, state, reading, d, row, valuation, reasons) if lack > 0 else None
    ask = (int(d.ask_price[row]), int(d.ask_quantity[row])) if d.ask_quantity[row] > 0 else None
    intents = reconcile(state, bid, ask)
    if outcome != "fallback":
        blocked = any(r.startswith("blocked") for r in reasons)
        if blocked and not intents:
            outcome = "blocked"
        elif not intents:
            outcome = "hold"
    return AgentDecision(
        instance_id=state.instance_id,
        tier=state.tier,
        at=state.now,
        outcome=outcome,
        intents=tuple(intents),
        spare=spare,
        lack=lack,
        reasons=tuple(reasons),
        inputs=inputs,
        valuation=valuation,
    )


def _inputs(
    policy: OwnerPolicy, state: AgentState, reading: _Reading, d: FleetDecision, row: int
) -> dict[str, Any]:
    """Return what the decision read, for its record."""
    inputs: dict[str, Any] = {
        "credits": state.credits,
        "funds": state.funds,
        "holdings": reading.holdings,
        "money": reading.money,
        "earn_rate": state.earn_rate,
        "cap": state.cap,
        "risk_quantile": policy.risk_quantile,
        "recent_prices": list(state.market.recent_prices[:20]),
        "scarcity": state.market.scarcity,
    }
    if reading.problem is not None:
        inputs["forecast"] = reading.problem
        return inputs
    assert state.forecast is not None
    hours = len(reading.need_high)
    inputs.update(
        {
            "upper_quantile": reading.upper,
            "hours": hours,
            "need_upper": sum(reading.need_high),
            "need_mid": sum(reading.need_mid),
            "need_risk_buy_horizon": sum(reading.need_risk[: policy.buy_horizon_hours]),
            "safety_margin": int(d.margin_upper[row]),
            "lowest_upper_path": int(d.lowest_upper[row]) if hours else reading.holdings,
            "overflows_cap": bool(d.overflows_cap[row]),
            "forecast_generated_at": state.forecast.generated_at,
            "model_version": state.forecast.model_version,
        }
    )
    return inputs


def _bid(
    policy: OwnerPolicy,
    state: AgentState,
    reading: _Reading,
    d: FleetDecision,
    row: int,
    valuation: Valuation,
    reasons: list[str],
) -> tuple[int, int] | None:
    """Return the bid ``(price, quantity)`` for what the agent lacks, or ``None`` and why."""
    lack = int(d.lack[row])
    quantity = max(lack, policy.min_order)
    affordable = int(d.affordable[row])
    if reading.holdings >= state.cap:
        reasons.append(
            f"blocked: the balance holds its cap {state.cap}; lacking {lack} milli-credits unbought"
        )
        return None
    if d.bid_price[row] == 0:
        reasons.append(
            f"blocked: max_bid {policy.max_bid} leaves no price on the tick "
            f"{state.market.tick_size}; lacking {lack} milli-credits unbought"
        )
        return None
    if affordable == 0:
        spendable = reading.money if policy.budget is None else min(reading.money, policy.budget)
        reasons.append(
            f"blocked: budget {spendable} cannot escrow one milli-credit at "
            f"{valuation.bid_price}; lacking {lack} milli-credits unbought"
        )
        return None
    if affordable < quantity:
        reasons.append(f"budget buys {affordable} of {quantity} milli-credits")
    return int(d.bid_price[row]), affordable


def _value(
    policy: OwnerPolicy, state: AgentState, reading: _Reading, d: FleetDecision, row: int
) -> Valuation:
    # the worth of the tranches the decision chose, at the owner's value
    upper = reading.level
    shares = {"need": NEED_SHARE, "band": band_share(upper), "tail": tail_share(upper)}
    return value_credit(
        value=reading.value,
        upper_quantile=upper,
        recent_prices=state.market.recent_prices,
        scarcity=state.market.scarcity,
        bid_share=shares.get(TRANCHES[int(d.bid_tranche[row])], NEED_SHARE),
        keep_share=shares.get(TRANCHES[int(d.ask_tranche[row])], tail_share(upper)),
        overflows_cap=bool(d.overflows_cap[row]),
        fee_bps=state.market.fee_bps,
        tick_size=state.market.tick_size,
        max_bid=policy.max_bid,
        min_ask=policy.min_ask,
    )


def reconcile(
    state: AgentState, bid: tuple[int, int] | None, ask: tuple[int, int] | None
) -> list[OrderIntent]:
    """Return the intents that turn the agent's open orders into the wanted ``bid`` and ``ask``.

    ``bid`` and ``ask`` are ``(price, quantity)`` or ``None``; an open order already as
    wanted stays; cancels come first, since their escrow funds the new orders.
    """
    stamp = f"{state.instance_id}-{to_micros(state.now)}"
    cancels: list[OrderIntent] = []
    wanted: dict[SideName, tuple[int, int] | None] = {"buy": bid, "sell": ask}
    for order in state.open_orders:
        target = wanted.get(order.side)
        if target is not None and target == (order.price, order.remaining):
            wanted[order.side] = None  # already in the market as wanted
            continue
        cancels.append(
            OrderIntent(
                state.instance_id,
                "cancel",
                f"{stamp}-c{len(cancels)}",
                side=order.side,
                order_id=order.order_id,
            )
        )
    places = [
        OrderIntent(
            state.instance_id,
            "place",
            f"{stamp}-{side}",
            side=side,
            price=target[0],
            quantity=target[1],
        )
        for side, target in wanted.items()
        if target is not None
    ]
    return cancels + places


class Agent:
    """The Virtual Instance Agent of one owner's policy; one instance per decision."""

    def __init__(self, policy: OwnerPolicy | None = None) -> None:
        self.policy = policy or OwnerPolicy()

    def decide(self, state: AgentState) -> AgentDecision:
        """Work out the instance's spare and lacking credits, prices, and order intents.

        :func:`decide_agents` on a fleet of one.

        Raises
        ------
        InvalidAgentInput
            For a state out of its domain (negative balances, a naive time, ...). A
            forecast that cannot be used is not an error: the fallback rule applies.
        """
        policy = self.policy
        return decide_agents([state], lambda _: policy)[0]
