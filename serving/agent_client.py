"""The Virtual Instance Agent over the HTTP API: a real deployment's transport.

:class:`HttpTransport` reads its instance's balances, open orders, forecasts and its
tier's market through the API, applies the intents, and reports the decision and every
refusal to the instance's decision log (``POST /v1/instances/{id}/decisions``);
:class:`HttpAgent` is the one agent runner (:class:`~market.agents.runner.AgentRunner`,
the same code the fleet replay runs in process) over it.

Every request is retried on a lost connection, 429 (after ``Retry-After``) and 502,
503 and 504, with exponential backoff. Each order is placed under the intent's
``Idempotency-Key``, sent unchanged on every retry, so an order whose response was
lost is booked once. A market's refusal (409, 422) is not retried: it is recorded,
and it moved nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import httpx

from data.forecasts import HORIZONS, MEDIAN_COL, POINT_COL, UPPER_COL
from market.agents.decision import (
    AgentDecision,
    AgentState,
    MarketView,
    OpenOrder,
    OrderIntent,
    OwnerPolicy,
)
from market.agents.forecast import InstanceForecast, horizon_forecast
from market.agents.runner import AgentRunner, IntentResult
from market.agents.valuation import pool_scarcity
from market.clock import system_clock
from market.decisions import DecisionRecord
from market.errors import TransportError
from market.units import BPS
from market.venue.orders import bid_escrow

_RETRY_STATUS = frozenset({429, 502, 503, 504})


class HttpClient(Protocol):
    """What the agent needs of an HTTP client (``httpx.Client`` has it)."""

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request."""
        ...


class ApiTransport:
    """Requests to the creditx API with a bearer token, retries and backoff.

    Parameters
    ----------
    client
        An HTTP client whose base URL is the API (``httpx.Client(base_url=...)``).
    token
        The agent's bearer token.
    retries
        How many times a request is retried after the first attempt.
    backoff
        Seconds before the first retry; doubled for each next one.
    sleep
        Waits between attempts (injected so tests do not wait).
    """

    def __init__(
        self,
        client: HttpClient,
        token: str,
        *,
        retries: int = 4,
        backoff: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send a request, retrying what may succeed later; return the final response.

        Raises
        ------
        TransportError
            When no attempt got an answer, or every one was told to wait.
        """
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        wait = self.backoff
        last: httpx.Response | None = None
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                retry_after = last.headers.get("retry-after") if last is not None else None
                self._sleep(float(retry_after) if retry_after and retry_after.isdigit() else wait)
                wait *= 2
            try:
                last = self._client.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                last, error = None, f"{type(exc).__name__}: {exc}"
                continue
            if last.status_code not in _RETRY_STATUS:
                return last
            error = last.text[:200]
        raise TransportError(method, path, None if last is None else last.status_code, error)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body, or raise if it did not succeed."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise TransportError(method, path, response.status_code, _detail(response))
        return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]


class HttpTransport:
    """One instance's agent reading and trading through the API (an :class:`AgentTransport`).

    Parameters
    ----------
    api
        Requests with the instance agent's token.
    instance_id, vcpus
        The instance the agent acts for, and its size.
    fee_bps
        The exchange's fee, to estimate what the agent's bids hold in escrow.
    clock
        Stamps decisions; the system clock at this edge.
    """

    def __init__(
        self,
        api: ApiTransport,
        instance_id: str,
        vcpus: int,
        *,
        fee_bps: int = 20,
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        self.api = api
        self.instance_id = instance_id
        self.vcpus = vcpus
        self.fee_bps = fee_bps
        self._clock = clock

    def read(self) -> list[AgentState]:
        """Return the instance's state: balances, open orders, forecasts, its tier's market.

        The owner's value set through the API, where there is one, prices the decision in
        place of the policy's ``throttle_cost``.
        """
        base = f"/v1/instances/{self.instance_id}"
        balances = self.api.json("GET", f"{base}/balances")
        tier = balances["tier"]
        tier_doc = self.api.json("GET", f"/v1/tiers/{tier}")
        earn_rate = self.vcpus * tier_doc["baseline_bps"] * 60 * 1000 // BPS
        orders = []
        for state in ("open", "partially_filled"):
            orders += self.api.json("GET", f"{base}/orders", params={"state": state, "limit": 100})
        trades = self.api.json("GET", f"/v1/tiers/{tier}/trades", params={"limit": 20})
        pool = next(p for p in self.api.json("GET", "/v1/pools") if p["tier"] == tier)
        return [
            AgentState(
                instance_id=self.instance_id,
                tier=tier,
                vcpus=self.vcpus,
                now=self._clock(),
                credits=balances["credits"],
                funds=balances["funds"],
                earn_rate=earn_rate,
                cap=24 * earn_rate,
                forecast=self._forecast(),
                market=MarketView(
                    recent_prices=tuple(t["price"] for t in trades),
                    scarcity=pool_scarcity(pool["available"], pool["capacity"]),
                    fee_bps=self.fee_bps,
                ),
                open_orders=tuple(
                    OpenOrder(
                        o["order_id"],
                        o["side"],
                        o["price"],
                        o["remaining"],
                        o["remaining"]
                        if o["side"] == "sell"
                        else bid_escrow(o["remaining"], o["price"], self.fee_bps),
                    )
                    for o in orders
                    if o["venue"] == "continuous"
                ),
                owner_value=self.owner_value(),
            )
        ]

    def _forecast(self) -> InstanceForecast | None:
        horizons = {}
        generated: datetime | None = None
        version = ""
        for horizon in HORIZONS:
            try:
                response = self.api.request(
                    "GET", f"/v1/instances/{self.instance_id}/forecast", params={"horizon": horizon}
                )
            except TransportError as exc:
                if exc.status != 503:
                    raise
                continue  # no forecasts are loaded: the fallback rule applies
            if response.status_code == 404:
                continue  # no forecast for this horizon: the agent decides on the others
            if response.status_code >= 400:
                raise TransportError("GET", "forecast", response.status_code, _detail(response))
            document = response.json()
            points = document["points"]
            horizons[horizon] = horizon_forecast(
                {c: [p[c] for p in points] for c in (POINT_COL, MEDIAN_COL, UPPER_COL)}
            )
            generated = datetime.fromisoformat(document["generated_at"])
            version = str(document["model_version"])
        if not horizons or generated is None:
            return None
        return InstanceForecast(generated, horizons, version)

    def cancel(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Cancel each intent's order through the API."""
        base = f"/v1/instances/{self.instance_id}/orders"
        return [
            self._result(intent, self.api.request("DELETE", f"{base}/{intent.order_id}"))
            for intent in intents
        ]

    def place(self, intents: Sequence[OrderIntent]) -> list[IntentResult]:
        """Place each intent's order under its idempotency key."""
        base = f"/v1/instances/{self.instance_id}/orders"
        results = []
        for intent in intents:
            body = {
                "side": intent.side,
                "price": intent.price,
                "quantity": intent.quantity,
                "time_in_force": "gtc",
            }
            response = self.api.request("POST", base, json=body, idempotency_key=intent.key)
            results.append(self._result(intent, response))
        return results

    def _result(self, intent: OrderIntent, response: httpx.Response) -> IntentResult:
        if response.status_code >= 300:
            problem = response.json() if response.content else {}
            return IntentResult(
                intent,
                None,
                str(problem.get("detail", response.text[:200])),
                str(problem.get("title", response.status_code)),
            )
        if intent.action == "cancel":
            return IntentResult(intent, intent.order_id)
        return IntentResult(intent, response.json()["order"]["order_id"])

    def record(self, records: Sequence[DecisionRecord]) -> None:
        """Report each record to the instance's decision log."""
        for record in records:
            self.api.json(
                "POST",
                f"/v1/instances/{self.instance_id}/decisions",
                json={"outcome": record.outcome, "detail": dict(record.detail)},
            )

    def owner_value(self) -> int | None:
        """Return the value the instance's owner set through the API, or ``None``."""
        path = f"/v1/instances/{self.instance_id}/owner-value"
        response = self.api.request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise TransportError("GET", path, response.status_code, _detail(response))
        return int(response.json()["value"])


class HttpAgent(AgentRunner):
    """One instance's agent over the API: the runner over an :class:`HttpTransport`."""

    def __init__(
        self,
        api: ApiTransport,
        instance_id: str,
        vcpus: int,
        policy: OwnerPolicy | None = None,
        *,
        fee_bps: int = 20,
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        super().__init__(
            HttpTransport(api, instance_id, vcpus, fee_bps=fee_bps, clock=clock), policy
        )

    def run_once(self) -> tuple[AgentDecision, list[IntentResult]]:
        """Read the state, decide, apply, and record the decision and any refusal."""
        played = self.step()
        return played.decisions[0], played.results
