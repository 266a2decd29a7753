"""Telemetry in and allowances out over HTTP, on the app and a real store: who may post
and read, bad batches refused whole with problem+json and nothing booked, duplicates
and late readings reported, Parquet as JSON, and the allowance feed."""

from __future__ import annotations

import io
import math
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from serving_support import START, Api

from serving.tokens import TokenKind

T0 = START - timedelta(hours=1)  # readings of the hour before the app's clock


def at(n: int) -> str:
    return (T0 + n * timedelta(minutes=5)).isoformat().replace("+00:00", "Z")


def reading(instance: str, n: int, cpu: float | None) -> dict[str, Any]:
    return {"instance_id": instance, "interval_start": at(n), "cpu_percent": cpu}


def collector(api: Api) -> dict[str, str]:
    token = api.services.tokens.issue(TokenKind.COLLECTOR, "collector-1").token
    return {"Authorization": f"Bearer {token}"}


def post(api: Api, headers: dict[str, str], *readings: dict[str, Any]) -> Any:
    return api.client.post("/v1/telemetry", json={"readings": list(readings)}, headers=headers)


def test_a_collector_posts_and_an_agent_reads_its_allowance(api: Api) -> None:
    headers = collector(api)
    response = post(
        api,
        headers,
        reading("vm-silver-1", 0, 50.0),
        reading("vm-gold-1", 0, 2.0),
        reading("vm-silver-1", 1, 0.0),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["accepted"], body["duplicates"], body["refused"]) == (
        3,
        3,
        [],
        [],
    )
    assert [(b["interval_start"], b["instances"]) for b in body["booked"]] == [
        (at(0), 2),
        (at(1), 1),
    ]
    mine = api.client.get("/v1/instances/vm-silver-1/allowance", headers=api.agent("vm-silver-1"))
    assert mine.status_code == 200, mine.text
    allowance = mine.json()
    # interval 0: 5 credits used, 1 earned, nothing held; interval 1: 1 earned, none used
    assert allowance["balance"] == 1_000
    assert allowance["vcpu_minutes"] == "1"
    assert allowance["throttled"] is False
    assert allowance["interval_start"] == at(1)
    assert allowance["next_interval_start"] == at(2)
    assert api.balances("vm-silver-1")[0] == 1_000
    admin = api.client.get("/v1/instances/vm-gold-1/allowance", headers=api.admin())
    assert admin.status_code == 200
    other = api.client.get("/v1/instances/vm-gold-1/allowance", headers=api.agent("vm-silver-1"))
    assert other.status_code == 403
    none_yet = api.client.get("/v1/instances/vm-gold-2/allowance", headers=api.admin())
    assert none_yet.status_code == 404
    assert none_yet.headers["content-type"] == "application/problem+json"


def test_a_collector_cannot_trade_or_read_and_an_agent_cannot_post_telemetry(api: Api) -> None:
    headers = collector(api)
    order = api.client.post(
        "/v1/instances/vm-silver-1/orders",
        json={"side": "buy", "price": 100, "quantity": 1000, "time_in_force": "gtc"},
        headers={**headers, "Idempotency-Key": "c-1"},
    )
    assert order.status_code == 403
    assert "collector" in order.json()["detail"]
    for path in (
        "/v1/instances/vm-silver-1/balances",
        "/v1/instances/vm-silver-1/allowance",
        "/v1/tiers",
        "/v1/admin/allowances",
        "/v1/admin/ledger/verify",
    ):
        assert api.client.get(path, headers=headers).status_code == 403, path
    refused = post(api, api.agent("vm-silver-1"), reading("vm-silver-1", 0, 1.0))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert api.client.post("/v1/telemetry", json={"readings": []}).status_code == 401
    admin = post(api, api.admin(), reading("vm-silver-1", 0, 1.0))
    assert admin.status_code == 200
    assert admin.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("bad", "field", "problem"),
    [
        (reading("vm-gold-1", 0, math.nan), "cpu_percent", "nan"),
        (reading("vm-gold-1", 0, None), "cpu_percent", "nan"),
        (reading("vm-gold-1", 0, -1.0), "cpu_percent", "negative"),
        (reading("vm-gold-1", 0, 120.0), "cpu_percent", "above_100"),
        (reading("vm-ghost", 0, 5.0), "instance_id", "unknown_instance"),
        (
            {**reading("vm-gold-1", 0, 5.0), "interval_start": "2026-11-24T13:02:00Z"},
            "",
            "off_grid",
        ),
        (reading("vm-gold-1", 12, 5.0), "interval_start", "not_ended"),
        (
            {**reading("vm-gold-1", 0, 5.0), "interval_start": "1999-12-31T23:55:00Z"},
            "interval_start",
            "out_of_range",
        ),
    ],
)
def test_a_bad_batch_is_refused_with_a_problem_and_nothing_is_booked(
    api: Api, bad: dict[str, Any], field: str, problem: str
) -> None:
    headers = collector(api)
    assert post(api, headers, reading("vm-gold-2", 0, 3.0)).status_code == 200
    before = api.services.market.ledger.balances()
    response = api.client.post(
        "/v1/telemetry",
        content=_json([reading("vm-gold-2", 1, 3.0), reading("vm-gold-1", 1, 3.0), bad]),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document = response.json()
    assert document["title"] == "Invalid telemetry"
    assert document["errors"][0]["row"] == 2
    assert document["errors"][0]["problem"] == problem
    assert field in document["errors"][0]["field"]
    assert "nothing was booked" in document["detail"]
    assert api.services.market.ledger.balances() == before
    assert [a.instance_id for a in api.services.live.allowances()] == ["vm-gold-2"]


def _json(readings: list[dict[str, Any]]) -> bytes:
    import json

    return json.dumps({"readings": readings}).encode()  # writes NaN as NaN


def test_bodies_that_are_not_readings_are_refused_by_what_is_wrong(api: Api) -> None:
    headers = collector(api)
    cases = [
        ({"readings": [{"instance_id": "vm-gold-1", "cpu_percent": 3}]}, "interval_start"),
        ({"readings": [{**reading("vm-gold-1", 0, 1.0), "extra": 1}]}, "extra"),
        (
            {"readings": [{**reading("vm-gold-1", 0, 1.0), "interval_start": "2026-11-24T14:00"}]},
            "",
        ),
        ({"samples": []}, "readings"),
    ]
    for body, where in cases:
        response = api.client.post("/v1/telemetry", json=body, headers=headers)
        assert response.status_code == 422, body
        assert where in response.json()["detail"], response.json()
    garbage = api.client.post(
        "/v1/telemetry",
        content=b"PAR1 not really",
        headers={**headers, "Content-Type": "application/vnd.apache.parquet"},
    )
    assert garbage.status_code == 422
    assert "not a Parquet file" in garbage.json()["detail"]
    csv = api.client.post(
        "/v1/telemetry", content=b"a,b", headers={**headers, "Content-Type": "text/csv"}
    )
    assert csv.status_code == 415
    twice = api.client.post(
        "/v1/telemetry",
        content=b'{"readings": [], "readings": []}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert twice.status_code == 400


def test_duplicates_and_late_readings_are_reported_not_refused(api: Api) -> None:
    headers = collector(api)
    post(api, headers, reading("vm-bronze-1", 0, 10.0))
    response = post(
        api,
        headers,
        reading("vm-bronze-1", 0, 10.0),
        reading("vm-bronze-1", 2, 10.0),
        reading("vm-bronze-1", 2, 11.0),
        reading("vm-bronze-2", -2, 10.0),  # ended 65 minutes ago
    )
    assert response.status_code == 200
    body = response.json()
    assert [(d["row"], d["reason"]) for d in body["duplicates"]] == [
        (0, "already booked"),
        (2, "repeated in this batch with another value (kept the first)"),
    ]
    assert [(r["row"], r["reason"]) for r in body["refused"]] == [
        (3, "older than the late window of 60 minutes")
    ]
    # vm-bronze-1's interval 1 has no reading: its interval 2 waits for it
    assert body["accepted"] == 1
    assert body["booked"] == []
    late = post(api, headers, reading("vm-bronze-1", 1, 10.0))
    assert [b["interval_start"] for b in late.json()["booked"]] == [at(1), at(2)]


def test_parquet_books_as_json_does(make_api: Any) -> None:
    readings = [reading(i, n, 7.5 * (n + 1)) for n in range(3) for i in ("vm-gold-1", "vm-gold-2")]
    as_json, as_parquet = make_api(), make_api()
    assert post(as_json, collector(as_json), *readings).status_code == 200
    frame = pd.DataFrame(readings)
    frame["interval_start"] = pd.to_datetime(frame["interval_start"], utc=True)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    response = as_parquet.client.post(
        "/v1/telemetry",
        content=buffer.getvalue(),
        headers={**collector(as_parquet), "Content-Type": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 200, response.text
    assert [b["instances"] for b in response.json()["booked"]] == [2, 2, 2]
    for instance in ("vm-gold-1", "vm-gold-2"):
        assert as_parquet.balances(instance) == as_json.balances(instance)
    contract = frame.rename(
        columns={"instance_id": "unique_id", "interval_start": "ds", "cpu_percent": "y"}
    )
    contract["y"] = [float("nan")] + [1.0] * (len(contract) - 1)
    buffer = io.BytesIO()
    contract.to_parquet(buffer, index=False)
    bad = as_parquet.client.post(
        "/v1/telemetry",
        content=buffer.getvalue(),
        headers={**collector(as_parquet), "Content-Type": "application/x-parquet"},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["problem"] == "nan"


def test_the_allowance_feed_pages_by_cursor_for_administrators_only(api: Api) -> None:
    headers = collector(api)
    post(api, headers, *(reading(i, 0, 1.0) for i in ("vm-bronze-1", "vm-bronze-2", "vm-gold-1")))
    page = api.client.get("/v1/admin/allowances", params={"limit": 2}, headers=api.admin())
    assert page.status_code == 200
    first = page.json()
    assert [a["instance_id"] for a in first["allowances"]] == ["vm-bronze-1", "vm-bronze-2"]
    rest = api.client.get(
        "/v1/admin/allowances", params={"since": first["next_cursor"]}, headers=api.admin()
    ).json()
    assert [a["instance_id"] for a in rest["allowances"]] == ["vm-gold-1"]
    post(api, headers, reading("vm-bronze-2", 1, 1.0))
    after = api.client.get(
        "/v1/admin/allowances", params={"since": rest["next_cursor"]}, headers=api.admin()
    ).json()
    assert [(a["instance_id"], a["interval_start"]) for a in after["allowances"]] == [
        ("vm-bronze-2", at(1))
    ]
    assert after["next_cursor"] > rest["next_cursor"]
    idle = api.client.get(
        "/v1/admin/allowances", params={"since": after["next_cursor"]}, headers=api.admin()
    ).json()
    assert idle == {"allowances": [], "next_cursor": after["next_cursor"]}
    agent = api.client.get("/v1/admin/allowances", headers=api.agent("vm-bronze-1"))
    assert agent.status_code == 403


def test_a_batch_larger_than_other_bodies_is_read(make_api: Any) -> None:
    api = make_api(max_body_bytes=2048)
    readings = [reading("vm-gold-1", n, 1.0) for n in range(11)]
    response = post(api, collector(api), *readings)
    assert response.status_code == 200, response.text
    assert len(response.json()["booked"]) == 11
    order = api.client.post(
        "/v1/instances/vm-gold-1/orders",
        content=b"x" * 4096,
        headers={**api.agent("vm-gold-1"), "Idempotency-Key": "k"},
    )
    assert order.status_code == 413


def test_an_administrator_issues_a_collector_token(api: Api) -> None:
    issued = api.client.post(
        "/v1/admin/tokens", json={"kind": "collector", "subject": "rack-7"}, headers=api.admin()
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    assert issued.json()["kind"] == "collector"
    response = post(api, {"Authorization": f"Bearer {token}"}, reading("vm-gold-1", 0, 1.0))
    assert response.status_code == 200


@pytest.mark.postgres
def test_telemetry_books_on_postgresql(pg_url: str, make_api: Any) -> None:
    api = make_api(database_url=pg_url)
    headers = collector(api)
    response = post(api, headers, *(reading("vm-silver-2", n, 40.0) for n in range(4)))
    assert response.status_code == 200, response.text
    assert len(response.json()["booked"]) == 4
    again = post(api, headers, reading("vm-silver-2", 3, 40.0))
    assert again.json()["duplicates"][0]["reason"] == "already booked"
    allowance = api.client.get("/v1/instances/vm-silver-2/allowance", headers=api.admin()).json()
    # 4 vCPUs at 40 % use 8 credits each interval and earn 2
    assert allowance["throttled"] is True
    assert allowance["last_throttled"] == 6_000
    assert api.services.market.ledger.verify().ok
