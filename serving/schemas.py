"""Request and response bodies: inputs (``*Create``, ``*Update``) forbid unknown fields,
so no client can set a balance, an owner or a tier; outputs (``*Public``) say only what
the caller may see. Credits are integer milli-credits, money integer minor units, and
exchange rates integer micro-units beside their exact decimal string."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from market.ledger import MAX_AMOUNT

MAX_RATE_MICRO = 1_000_000_000  # the tier manager caps rates at 1,000


def _whole_number(value: object) -> object:
    # JSON has one number type: 250 and 250.0 are the same integer, "250" and 250.5 are not
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not a boolean")
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError(f"must be a whole number, got {value!r}")


Amount = Annotated[int, Field(strict=True, ge=1, le=MAX_AMOUNT), BeforeValidator(_whole_number)]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Demand = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Horizon = Literal["hour", "day", "week"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


class Problem(_Output):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, object]] | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Forbidden",
                    "status": 403,
                    "detail": "this token acts for instance 'vm-bronze-1' only",
                    "instance": "/v1/instances/vm-gold-1/balances",
                }
            ]
        }
    )


# tiers, pools, rates


class TierPublic(_Output):
    """A resource tier: hardware class, baseline and exchange rate."""

    name: str
    cpu_ghz: str
    memory_gib_per_vcpu: str
    ssd: str
    network_gbps: str
    baseline_bps: int = Field(description="per-vCPU baseline, basis points of one vCPU")
    exchange_rate_micro: int = Field(description="value of one credit, micro-units of Bronze")
    exchange_rate: str = Field(description="the same rate as an exact decimal")
    pool_horizon_hours: int

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "silver",
                    "cpu_ghz": "3.1",
                    "memory_gib_per_vcpu": "2",
                    "ssd": "nvme",
                    "network_gbps": "10",
                    "baseline_bps": 1000,
                    "exchange_rate_micro": 1500000,
                    "exchange_rate": "1.5",
                    "pool_horizon_hours": 24,
                }
            ]
        }
    )


class PoolPublic(_Output):
    """A tier's credit pool now."""

    tier: str
    available: int = Field(description="milli-credits in the pool")
    capacity: int = Field(description="most milli-credits the pool may hold")
    headroom: int
    exchange_rate_micro: int

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tier": "gold",
                    "available": 120000,
                    "capacity": 3456000,
                    "headroom": 3336000,
                    "exchange_rate_micro": 2200000,
                }
            ]
        }
    )


class ExchangeRatePublic(_Output):
    """A tier's exchange rate."""

    tier: str
    exchange_rate_micro: int
    exchange_rate: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"tier": "gold", "exchange_rate_micro": 2200000, "exchange_rate": "2.2"}]
        }
    )


class ExchangeRateUpdate(_Input):
    """An administrator's new exchange rate for a tier, with the reason audited."""

    exchange_rate_micro: Annotated[int, BeforeValidator(_whole_number)] = Field(
        strict=True,
        ge=1,
        le=MAX_RATE_MICRO,
        description="value of one credit of the tier in micro-units, e.g. 2500000 for 2.5",
    )
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"exchange_rate_micro": 2400000, "reason": "gold saturated"}]
        }
    )


class RateChangePublic(_Output):
    """An audited exchange-rate change."""

    tier: str
    old_rate_micro: int
    new_rate_micro: int
    actor: str
    reason: str
    changed_at: datetime


class SwapCreate(_Input):
    """Move milli-credits from one tier's pool to another's, converted at their rates."""

    source_tier: Name
    destination_tier: Name
    amount: Amount = Field(description="milli-credits taken from the source pool")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"source_tier": "bronze", "destination_tier": "gold", "amount": 50000}]
        }
    )


class SwapPublic(_Output):
    """A booked swap; ``amount_in * source_rate == amount_out * destination_rate + remainder``."""

    entry_id: str
    source_tier: str
    destination_tier: str
    amount_in: int
    amount_out: int
    source_rate_micro: int
    destination_rate_micro: int
    remainder: int
    created_at: datetime


class DepositCreate(_Input):
    """Money paid into an instance's funds from outside."""

    instance_id: Name
    amount: Amount = Field(description="minor currency units")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"instance_id": "vm-gold-1", "amount": 100000}]}
    )


class DepositPublic(_Output):
    """A booked deposit."""

    entry_id: str
    instance_id: str
    amount: int
    created_at: datetime


class BalancesPublic(_Output):
    """An instance's balances."""

    instance_id: str
    tier: str
    credits: int = Field(description="milli-credits of the instance's tier")
    funds: int = Field(description="minor currency units")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"instance_id": "vm-gold-1", "tier": "gold", "credits": 96000, "funds": 25000}
            ]
        }
    )


# orders and market data


class _OrderBase(_Input):
    side: Literal["buy", "sell"]
    price: Amount = Field(description="limit price, minor units per credit")
    quantity: Amount = Field(description="milli-credits")
    venue: Literal["continuous", "auction"] = Field(
        default="continuous", description="the continuous book, or the next call auction"
    )


class GoodTillCancelledOrder(_OrderBase):
    """An order that rests until it fills or its owner cancels it."""

    time_in_force: Literal["gtc"]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"side": "buy", "price": 120, "quantity": 5000, "time_in_force": "gtc"}]
        }
    )


class ImmediateOrCancelOrder(_OrderBase):
    """An order that fills what it can at once; the rest is cancelled."""

    time_in_force: Literal["ioc"]


class GoodTillTimeOrder(_OrderBase):
    """An order that rests until ``expires_at`` at the latest."""

    time_in_force: Literal["gtt"]
    expires_at: AwareDatetime = Field(description="when the order expires; must be in the future")


OrderCreate = Annotated[
    GoodTillCancelledOrder | ImmediateOrCancelOrder | GoodTillTimeOrder,
    Field(discriminator="time_in_force"),
]
"""An order of the caller's instance; its tier and owner come from the token."""


class OrderPublic(_Output):
    """An order as its owner sees it."""

    order_id: str
    instance_id: str
    tier: str
    side: Literal["buy", "sell"]
    price: int
    quantity: int
    filled: int
    remaining: int
    time_in_force: str
    expires_at: datetime | None
    created_at: datetime
    state: str
    venue: Literal["continuous", "auction"]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "3f2a9c1b7e-17",
                    "instance_id": "vm-gold-1",
                    "tier": "gold",
                    "side": "buy",
                    "price": 120,
                    "quantity": 5000,
                    "filled": 2000,
                    "remaining": 3000,
                    "time_in_force": "gtc",
                    "expires_at": None,
                    "created_at": "2026-11-24T15:00:00Z",
                    "state": "partially_filled",
                    "venue": "continuous",
                }
            ]
        }
    )


class TradePublic(_Output):
    """A trade on a tier's public tape (counterparties are not shown)."""

    trade_id: str
    tier: str
    price: int
    quantity: int
    value: int
    fee: int
    aggressor: str | None
    at: datetime


class OwnTradePublic(_Output):
    """A trade of the caller's instance."""

    trade_id: str
    tier: str
    side: Literal["buy", "sell"]
    order_id: str
    price: int
    quantity: int
    value: int = Field(description="what the buyer pays the seller, minor units")
    fee: int = Field(description="what the buyer pays the exchange, minor units")
    at: datetime


class OrderPlaced(_Output):
    """What placing an order did: the order afterwards and its trades."""

    order: OrderPublic
    trades: list[OwnTradePublic]


class LevelPublic(_Output):
    """One price level of a book."""

    price: int
    quantity: int
    orders: int


class DepthPublic(_Output):
    """Both sides of a tier's book, best price first."""

    tier: str
    bids: list[LevelPublic]
    asks: list[LevelPublic]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tier": "gold",
                    "bids": [{"price": 118, "quantity": 4000, "orders": 2}],
                    "asks": [{"price": 121, "quantity": 1000, "orders": 1}],
                }
            ]
        }
    )


class AuctionPublic(_Output):
    """The result of one call auction."""

    auction_id: str
    tier: str
    mode: str
    at: datetime
    clearing_price: int | None
    buy_price: int | None
    sell_price: int | None
    volume: int
    demand: int
    supply: int
    unmatched_bid_quantity: int
    unmatched_ask_quantity: int


def _timestamp_text(value: object) -> object:
    """Refuse a number where a timestamp is due: JSON carries timestamps as text."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 timestamp with a timezone, as text")
    return value


class RoundCreate(_Input):
    """Which hour's market round to run."""

    hour: Annotated[AwareDatetime, BeforeValidator(_timestamp_text)] | None = Field(
        None, description="any moment of the hour (UTC); the current hour without"
    )


class RoundPublic(_Output):
    """One hourly market round: how far it got and, once done, what it did."""

    round_id: str = Field(description="the round's hour, e.g. 2026-12-05T10:00Z")
    hour: datetime
    stage: str = Field(description="offered, submitted, cleared or done")
    started_at: datetime
    updated_at: datetime
    record: dict[str, object] | None = Field(
        None,
        description="the pools' levels and offers, the agents' orders, each tier's auction "
        "(clearing price, volume, trades, money paid), the CEM's swaps and the rates after",
    )


class VerifyPublic(_Output):
    """What replaying the ledger's journal found."""

    ok: bool
    entries: int
    accounts: int
    asset_totals: dict[str, int]
    balance_mismatches: dict[str, list[int]]
    negative_accounts: dict[str, int]
    asset_errors: list[str]


# tokens


class TokenCreate(_Input):
    """A token for an instance's agent, an administrator or a telemetry collector."""

    kind: Literal["agent", "admin", "collector"]
    subject: Name = Field(
        description="the instance id of an agent, the name of an administrator or collector"
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "agent", "subject": "vm-gold-1"}]}
    )


class TokenPublic(_Output):
    """A token's record; the secret is never shown again."""

    token_id: str
    kind: Literal["agent", "admin", "collector"]
    subject: str
    created_at: datetime
    revoked_at: datetime | None


class TokenIssued(TokenPublic):
    """A new token: ``token`` is shown here once and stored only as its SHA-256."""

    token: str


# forecasts


class ForecastPoint(_Output):
    """One hour of a forecast: the point forecast and its quantiles (vCPU-% demand)."""

    ds: datetime
    yhat: float = Field(description="the median of the forecast distribution (equals q50)")
    q10: float | None = None
    q50: float
    q90: float
    source: str = Field(
        description="'learned'; 'prior' for an instance with less than a day of history; "
        "'user' where the owner's forecast applies"
    )


class ForecastPublic(_Output):
    """An instance's demand forecast over one horizon."""

    instance_id: str
    horizon: Horizon
    model_name: str
    model_version: str
    generated_at: datetime
    origin: str = Field(description="'batch': the predict flow's output, the only origin")
    points: list[ForecastPoint]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "instance_id": "vm-gold-1",
                    "horizon": "hour",
                    "model_name": "creditx-fleet-forecaster",
                    "model_version": "3",
                    "generated_at": "2026-11-24T15:00:00Z",
                    "origin": "batch",
                    "points": [
                        {
                            "ds": "2026-11-24T16:00:00Z",
                            "yhat": 30.9,
                            "q10": 22.4,
                            "q50": 30.9,
                            "q90": 48.0,
                            "source": "learned",
                        }
                    ],
                }
            ]
        }
    )


class ForecastBatchCreate(_Input):
    """Forecasts of many instances over one horizon."""

    instance_ids: list[Name] = Field(min_length=1, max_length=100)
    horizon: Horizon = "day"

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"instance_ids": ["vm-gold-1"], "horizon": "day"}]}
    )


class ForecastBatchPublic(_Output):
    """The forecasts found, and the instances that have none."""

    forecasts: list[ForecastPublic]
    missing: list[str]


class ForecastStatusPublic(_Output):
    """Which model version the service serves, and where the champion alias points."""

    model_name: str | None
    model_version: str | None
    generated_at: datetime | None
    origin: str | None
    champion_version: str | None = Field(description="where the champion alias points")
    stale: bool = Field(
        default=False,
        description="the champion moved and the predict flow has not served its forecasts yet",
    )
    instances: int
    last_error: str | None
    loading: bool = False


class DailyUserForecast(_Input):
    """The same demand every day: 24 values by UTC hour."""

    kind: Literal["daily"]
    values: list[Demand] = Field(min_length=24, max_length=24)


class WeeklyUserForecast(_Input):
    """The same demand every week: 168 values from Monday 00:00 UTC."""

    kind: Literal["weekly"]
    values: list[Demand] = Field(min_length=168, max_length=168)


UserForecastSet = Annotated[DailyUserForecast | WeeklyUserForecast, Field(discriminator="kind")]


class UserForecastPublic(_Output):
    """An owner's user-defined forecast."""

    instance_id: str
    forecast: DailyUserForecast | WeeklyUserForecast
    updated_at: datetime
    updated_by: str


class HealthPublic(_Output):
    """Whether the service is up, and what it serves."""

    status: Literal["ok"]
    forecasts_loaded: bool


class OwnerValueSet(_Input):
    """What a throttled vCPU-minute costs the instance's owner."""

    value: Annotated[int, Field(strict=True, ge=1, le=10**9), BeforeValidator(_whole_number)] = (
        Field(description="minor units per throttled vCPU-minute (per credit)")
    )


class OwnerValuePublic(_Output):
    """An instance's owner value: every bid and ask of its agent is priced from it."""

    instance_id: str
    value: int = Field(description="minor units per throttled vCPU-minute (per credit)")
    updated_at: datetime
    updated_by: str


# telemetry and allowances


class TelemetryReading(_Input):
    """One 5-minute reading of an instance."""

    instance_id: Name
    interval_start: AwareDatetime = Field(
        description="start of the 5-minute interval, on the grid (…:00, …:05, … UTC)"
    )
    cpu_percent: float | None = Field(
        description="mean CPU utilisation over the interval, percent of the instance's vCPUs"
        " (0-100, read to 6 decimals)"
    )


class TelemetryBatchCreate(_Input):
    """A batch of readings, booked whole or refused whole."""

    readings: list[TelemetryReading] = Field(max_length=200_000)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "readings": [
                        {
                            "instance_id": "vm-silver-1",
                            "interval_start": "2026-01-05T10:00:00Z",
                            "cpu_percent": 37.5,
                        }
                    ]
                }
            ]
        }
    )


class ReadingNotePublic(_Output):
    """A reading not booked: a duplicate or a refusal, and why."""

    row: int = Field(description="the reading's position in the batch, from 0")
    instance_id: str
    interval_start: datetime
    reason: str


class IntervalBookedPublic(_Output):
    """One booking transaction: an interval of some instances (totals in milli-credits)."""

    interval_start: datetime
    booking_id: str
    instances: int
    readings: int = Field(description="instances booked from a reading")
    missing: int = Field(description="instances booked as zero usage (no reading in time)")
    earned: int
    spent: int
    to_pool: int
    from_pool: int
    forfeited: int
    throttled: int


class TelemetryAccepted(_Output):
    """What became of a batch: new readings, duplicates, refusals, and what was booked."""

    received: int
    accepted: int = Field(description="new readings stored to be booked")
    duplicates: list[ReadingNotePublic]
    refused: list[ReadingNotePublic]
    booked: list[IntervalBookedPublic]


class AllowancePublic(_Output):
    """What an instance may use after its last booked interval."""

    instance_id: str
    tier: str
    interval_start: datetime = Field(description="the last booked interval")
    next_interval_start: datetime = Field(description="the interval this allowance is for")
    balance: int = Field(description="milli-credits: thousandths of a vCPU-minute at 100 %")
    vcpu_minutes: str = Field(description="the balance in vCPU-minutes, an exact decimal")
    throttled: bool = Field(
        description="runs at baseline next: the balance is empty and no pool credit may be drawn"
    )
    last_throttled: int = Field(description="milli-credits the last interval could not get")
    earns_per_interval: int = Field(description="milli-credits earned per interval at baseline")
    pool_draw: bool
    cursor: int = Field(description="this version's position in the allowance feed")
    updated_at: datetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "instance_id": "vm-silver-1",
                    "tier": "silver",
                    "interval_start": "2026-01-05T10:00:00Z",
                    "next_interval_start": "2026-01-05T10:05:00Z",
                    "balance": 41000,
                    "vcpu_minutes": "41",
                    "throttled": False,
                    "last_throttled": 0,
                    "earns_per_interval": 1000,
                    "pool_draw": True,
                    "cursor": 1207,
                    "updated_at": "2026-01-05T10:05:31Z",
                }
            ]
        }
    )


class AllowanceFeedPublic(_Output):
    """Allowances changed after a cursor, in cursor order, each instance once (latest)."""

    allowances: list[AllowancePublic]
    next_cursor: int = Field(description="pass as `since` to read what changes next")
