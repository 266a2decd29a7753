"""The Virtual Instance Agent over the HTTP API: a real deployment's transport.

:class:`HttpAgent` reads its instance's balances, open orders, forecasts and its
tier's market through the API, lets :class:`~market.agents.decision.Agent` decide (the same code
the fleet replay runs in process), applies the intents, and reports the decision and
every refusal to the instance's decision log (``POST /v1/instances/{id}/decisions``).

Every request is retried on a lost connection, 429 (after ``Retry-After``) and 502,
503 and 504, with exponential backoff. Each order is placed under the intent's
``Idempotency-Key``, sent unchanged on every retry, so an order whose response was
lost is booked once. A market's refusal (409, 422) is not retried: it is recorded,
and it moved nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import httpx

from data.forecasts import HORIZONS, MEDIAN_COL, UPPER_COL
from market.agents.decision import (
    Agent,
    AgentDecision,
    AgentState,
    MarketView,
    OpenOrder,
    OwnerPolicy,
)
from market.agents.forecast import HorizonForecast, InstanceForecast
from market.agents.runner import IntentResult, rejection_records, skipped
from market.agents.valuation import pool_scarcity
from market.clock import system_clock
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


class HttpAgent:
    """One instance's agent trading through the API.

    Parameters
    ----------
    transport
        Requests with the instance agent's token.
    instance_id, vcpus
        The instance the agent acts for, and its size.
    policy
        The owner's policy.
    fee_bps
        The exchange's fee, to estimate what the agent's bids hold in escrow.
    clock
        Stamps decisions; the system clock at this edge.
    """

    def __init__(
        self,
        transport: ApiTransport,
        instance_id: str,
        vcpus: int,
        policy: OwnerPolicy | None = None,
        *,
        fee_bps: int = 20,
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        self.transport = transport
        self.instance_id = instance_id
        self.vcpus = vcpus
        self.agent = Agent(policy)
        self.fee_bps = fee_bps
        self._clock = clock

    def state(self) -> AgentState:
        """Read the instance's state, its forecasts and its tier's market from the API."""
        base = f"/v1/instances/{self.instance_id}"
        balances = self.transport.json("GET", f"{base}/balances")
        tier = balances["tier"]
        tier_doc = self.transport.json("GET", f"/v1/tiers/{tier}")
        earn_rate = self.vcpus * tier_doc["baseline_bps"] * 60 * 1000 // BPS
        orders = []
        for state in ("open", "partially_filled"):
            orders += self.transport.json(
                "GET", f"{base}/orders", params={"state": state, "limit": 100}
            )
        trades = self.transport.json("GET", f"/v1/tiers/{tier}/trades", params={"limit": 20})
        pool = next(p for p in self.transport.json("GET", "/v1/pools") if p["tier"] == tier)
        return AgentState(
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
        )

    def _forecast(self) -> InstanceForecast | None:
        horizons = {}
        generated: datetime | None = None
        version = ""
        for horizon in HORIZONS:
            try:
                response = self.transport.request(
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
            horizons[horizon] = HorizonForecast(
                tuple(float(p["yhat"]) for p in points),
                {q: tuple(float(p[q]) for p in points) for q in (MEDIAN_COL, UPPER_COL)},
            )
            generated = datetime.fromisoformat(document["generated_at"])
            version = str(document["model_version"])
        if not horizons or generated is None:
            return None
        return InstanceForecast(generated, horizons, version)

    def apply(self, decision: AgentDecision) -> list[IntentResult]:
        """Cancel and place the decision's intents; return what the market did with each."""
        base = f"/v1/instances/{self.instance_id}/orders"
        results = []
        failed: set[str | None] = set()
        for intent in decision.intents:
            if intent.action == "place" and intent.side in failed:
                results.append(skipped(intent))
                continue
            if intent.action == "cancel":
                response = self.transport.request("DELETE", f"{base}/{intent.order_id}")
                order_id = intent.order_id
            else:
                body = {
                    "side": intent.side,
                    "price": intent.price,
                    "quantity": intent.quantity,
                    "time_in_force": "gtc",
                }
                response = self.transport.request(
                    "POST", base, json=body, idempotency_key=intent.key
                )
                order_id = (
                    response.json()["order"]["order_id"] if response.status_code < 300 else None
                )
            if response.status_code >= 300:
                if intent.action == "cancel":
                    failed.add(intent.side)
                problem = response.json() if response.content else {}
                results.append(
                    IntentResult(
                        intent,
                        None,
                        str(problem.get("detail", response.text[:200])),
                        str(problem.get("title", response.status_code)),
                    )
                )
            else:
                results.append(IntentResult(intent, order_id))
        return results

    def owner_value(self) -> int | None:
        """Return the value the instance's owner set through the API, or ``None``."""
        path = f"/v1/instances/{self.instance_id}/owner-value"
        response = self.transport.request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise TransportError("GET", path, response.status_code, _detail(response))
        return int(response.json()["value"])

    def run_once(self) -> tuple[AgentDecision, list[IntentResult]]:
        """Read the state, decide, apply, and record the decision and any refusal.

        The owner's value set through the API, where there is one, prices the decision in
        place of the policy's ``throttle_cost``.
        """
        value = self.owner_value()
        if value is not None and value != self.agent.policy.throttle_cost:
            self.agent = Agent(dataclasses.replace(self.agent.policy, throttle_cost=value))
        decision = self.agent.decide(self.state())
        results = self.apply(decision)
        records = [decision.record(), *rejection_records(results, decision.at)]
        for record in records:
            self.transport.json(
                "POST",
                f"/v1/instances/{self.instance_id}/decisions",
                json={"outcome": record.outcome, "detail": dict(record.detail)},
            )
        return decision, results
