"""Everything a request may use, built once per application from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from market.cem.live import LiveAccrual
from market.ledger import create_store_engine
from serving.allowance_mirror import AllowanceMirror
from serving.forecasts import ChampionSource, ForecastStore, MlflowChampion
from serving.market_service import MarketService, OrderDesk
from serving.owner_values import OwnerValueStore
from serving.ratelimit import RateLimiter
from serving.render import render_placement, render_stored_placement
from serving.settings import Settings
from serving.tokens import TokenStore
from serving.user_forecasts import UserForecastStore


@dataclass(slots=True)
class Services:
    """The stores and limits behind the API."""

    settings: Settings
    clock: Callable[[], datetime]
    market: MarketService
    tokens: TokenStore
    limiter: RateLimiter
    forecasts: ForecastStore
    user_forecasts: UserForecastStore
    owner_values: OwnerValueStore
    desk: OrderDesk
    live: LiveAccrual
    allowances: AllowanceMirror

    def close(self) -> None:
        """Stop the reloader and release the store."""
        self.forecasts.stop()
        self.market.close()


def build_services(
    settings: Settings,
    clock: Callable[[], datetime],
    champion: ChampionSource | bool | None = True,
) -> Services:
    """Open the stores named by ``settings`` (migrating the SQL store) and wire them.

    ``champion=True`` follows the MLflow champion of ``settings``; pass a
    :class:`~serving.forecasts.ChampionSource` to follow another, or ``None`` to serve
    the batch predictions only.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_store_engine(settings.ledger_url)
    market = MarketService(engine, clock, settings.tiers_config)
    live = LiveAccrual(market.ledger, market.tiers, late_window=settings.late_window)
    source: ChampionSource | None
    if champion is True:
        source = MlflowChampion(settings.tracking_uri, settings.model_name)
    elif champion is False:
        source = None
    else:
        source = champion
    return Services(
        settings=settings,
        clock=clock,
        market=market,
        tokens=TokenStore(engine, clock, cache_seconds=settings.token_cache_seconds),
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        forecasts=ForecastStore(settings.predictions_dir, source, clock),
        user_forecasts=UserForecastStore(engine, clock),
        owner_values=OwnerValueStore(engine, clock),
        desk=OrderDesk(market, render_placement, render_stored_placement),
        live=live,
        allowances=AllowanceMirror(live),
    )
