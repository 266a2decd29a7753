"""Telemetry in: batches of 5-minute CPU readings, booked into the ledger."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from data.errors import InvalidReadingsError
from market.cem.live import Submission
from serving.deps import BEARER_SECURITY
from serving.render import from_fields
from serving.routing import Access, GuardedRoute, access
from serving.schemas import (
    IntervalBookedPublic,
    ReadingNotePublic,
    TelemetryAccepted,
)
from serving.services import Services
from serving.telemetry import JSON, PARQUET, read_batch, refused

router = APIRouter(tags=["telemetry"], route_class=GuardedRoute)

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": "#/components/schemas/TelemetryBatchCreate"}},
            PARQUET: {
                "schema": {"type": "string", "format": "binary"},
                "description": "columns instance_id, interval_start (timestamp), cpu_percent",
            },
        },
    },
    **BEARER_SECURITY,
}


@router.post(
    "/v1/telemetry",
    response_model=TelemetryAccepted,
    summary="Post 5-minute CPU readings",
    openapi_extra=_BODY,
)
@access(Access.COLLECT)
async def post_telemetry(request: Request) -> TelemetryAccepted:
    """Book a batch of readings: each (instance, interval) once, in interval order.

    A collector's or an administrator's token. The body is JSON or Parquet. A batch
    with any bad reading (NaN, negative, above 100, unknown instance, off the 5-minute
    grid, an interval not ended yet or before 2000) is refused whole with 422, naming
    every problem; nothing is booked. Otherwise readings already received are reported
    as duplicates, readings too late to book are refused with the reason, and the
    rest are stored and booked with everything else due: see `booked`.
    """
    services: Services = request.app.state.services
    body = await request.body()
    # parsing ten thousand readings takes a while: not on the event loop
    return await run_in_threadpool(_submit, services, body, request.headers.get("content-type"))


def _submit(services: Services, body: bytes, content_type: str | None) -> TelemetryAccepted:
    batch = read_batch(body, content_type)
    try:
        submission = services.live.submit(batch, services.clock())
    except InvalidReadingsError as exc:
        raise refused(exc) from exc
    if submission.booked:
        services.allowances.catch_up()  # a read after this response sees its bookings
    return accepted_public(submission)


def accepted_public(submission: Submission) -> TelemetryAccepted:
    """Return the response of a submitted batch."""
    receipt = submission.receipt
    return TelemetryAccepted(
        received=receipt.received,
        accepted=receipt.accepted,
        duplicates=[from_fields(ReadingNotePublic, n) for n in receipt.duplicates],
        refused=[from_fields(ReadingNotePublic, n) for n in receipt.refused],
        booked=[from_fields(IntervalBookedPublic, b) for b in submission.booked],
    )
