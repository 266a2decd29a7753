"""What the API tests share: the fixture fleet, batch predictions in the ``predict``
flow's format (the outside world of the service), and a handle on the app under test."""

from __future__ import annotations

from dataclasses import dataclass, field

from batch_predictions import (
    HORIZON_HOURS,
    INSTANCES,
    START,
    publish_predictions,
    write_predictions,
)
from fastapi.testclient import TestClient

from market.clock import ManualClock
from market.ledger import EntryRequest, Transfer, credits_asset, instance_credits, mint_account
from serving.services import Services
from serving.tokens import TokenKind

__all__ = [
    "HORIZON_HOURS",
    "INSTANCES",
    "START",
    "Api",
    "publish_predictions",
    "write_predictions",
]


@dataclass
class Api:
    """The app under test, its services, clock and tokens."""

    client: TestClient
    services: Services
    clock: ManualClock
    admin_token: str
    agent_tokens: dict[str, str] = field(default_factory=dict)

    def admin(self) -> dict[str, str]:
        """Return the headers of the administrator."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def agent(self, instance_id: str) -> dict[str, str]:
        """Return the headers of an instance's agent (issuing its token on first use)."""
        if instance_id not in self.agent_tokens:
            issued = self.services.tokens.issue(TokenKind.AGENT, instance_id)
            self.agent_tokens[instance_id] = issued.token
        return {"Authorization": f"Bearer {self.agent_tokens[instance_id]}"}

    def grant_credits(self, instance_id: str, amount: int) -> None:
        """Accrue milli-credits to an instance, as burstable accounting does."""
        market = self.services.market
        tier = market.tiers.instance(instance_id).tier
        market.ledger.post(
            EntryRequest(
                (
                    Transfer(
                        mint_account(credits_asset(tier)), instance_credits(instance_id), amount
                    ),
                ),
                "accrual",
                "test",
            )
        )

    def deposit(self, instance_id: str, amount: int) -> None:
        """Pay money into an instance's funds through the API."""
        response = self.client.post(
            "/v1/admin/deposits",
            json={"instance_id": instance_id, "amount": amount},
            headers=self.admin(),
        )
        assert response.status_code == 201, response.text

    def balances(self, instance_id: str) -> tuple[int, int]:
        """Return an instance's credits and funds, read from the ledger."""
        return self.services.market.balances(instance_id)
