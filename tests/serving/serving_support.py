"""What the API tests share: the fixture fleet, batch predictions in the ``predict``
flow's format (the outside world of the service), and a handle on the app under test."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient

from market.clock import ManualClock
from market.ledger import EntryRequest, Transfer, credits_asset, instance_credits, mint_account
from serving.services import Services
from serving.tokens import TokenKind

START = datetime(2026, 11, 24, 15, tzinfo=UTC)
INSTANCES = (
    "vm-bronze-1",
    "vm-bronze-2",
    "vm-silver-1",
    "vm-silver-2",
    "vm-gold-1",
    "vm-gold-2",
    "vm-platinum-1",
)
HORIZON_HOURS = {"hour": 1, "day": 24, "week": 168}


def write_predictions(
    directory: Path,
    version: str,
    instances: tuple[str, ...] = INSTANCES,
    *,
    level: float = 10.0,
    generated_at: datetime = START,
) -> None:
    """Write batch predictions as the ``predict`` flow does (parquet + manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, unique_id in enumerate(instances):
        for horizon, hours in HORIZON_HOURS.items():
            for h in range(1, hours + 1):
                yhat = level + n + h / 100
                rows.append(
                    {
                        "unique_id": unique_id,
                        "horizon": horizon,
                        "ds": pd.Timestamp(generated_at + timedelta(hours=h)),
                        "yhat": yhat,
                        "q50": yhat - 0.5,
                        "q90": yhat + 5.0,
                        "model": "seasonal_naive",
                        "source": "learned",
                        "model_name": "creditx-fleet-forecaster",
                        "model_version": version,
                        "generated_at": pd.Timestamp(generated_at),
                    }
                )
    pd.DataFrame(rows).to_parquet(directory / "forecasts.parquet", index=False)
    manifest = {
        "model_name": "creditx-fleet-forecaster",
        "model_version": version,
        "generated_at": generated_at.isoformat(),
        "snapshot": "test",
        "rows": len(rows),
        "instances": len(instances),
        "horizons": HORIZON_HOURS,
        "quantiles": [0.5, 0.9],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))


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
