"""Webhooks: a job's deliveries (`GET /v1/jobs/{id}/deliveries`) and the caller's signing secret."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from service.api.deps import OwnerDep, SessionDep, SettingsDep
from service.api.params import PROBLEM
from service.core import queries, webhooks
from service.core.models import WebhookDelivery, as_utc

router = APIRouter(tags=["webhooks"])

JobId = Annotated[str, Path(description="The job's id (a UUID).", examples=["6f1c2b8e-3f7a-4d1e-9c55-2b0c7d1e9a01"])]


class DeliveryAttempt(BaseModel):
    attempt: int
    at: dt.datetime
    status_code: int | None = Field(None, description="The receiver's HTTP status; null when none came back.")
    error: str | None = Field(None, description="Why the attempt failed (HTTP status, network error, refusal).")
    duration_s: float


class DeliveryOut(BaseModel):
    id: str = Field(description="The event's `webhook-id` header: the same on every attempt.")
    event: str = Field(description="`job.succeeded`, `job.failed` or `job.cancelled`.", examples=["job.succeeded"])
    url: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: dt.datetime | None = Field(None, description="When a pending delivery is tried again.")
    created_at: dt.datetime
    delivered_at: dt.datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    history: list[DeliveryAttempt]

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id, event=row.event, url=row.url, state=row.state, attempts=row.attempts,  # type: ignore[arg-type]
            next_attempt_at=as_utc(row.next_attempt_at), created_at=as_utc(row.created_at),  # type: ignore[arg-type]
            delivered_at=as_utc(row.delivered_at), last_status_code=row.last_status_code,
            last_error=row.last_error, history=[DeliveryAttempt.model_validate(h) for h in row.history or []],
        )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class WebhookSecret(BaseModel):
    secret: str = Field(description="Standard Webhooks secret (`whsec_…`) that signs the events of your jobs.")
    scheme: str = "Standard Webhooks v1: webhook-signature = v1,base64(HMAC-SHA256(secret, id.timestamp.body))"


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    response_model=DeliveryList,
    summary="The job's webhook deliveries and their attempts",
    responses={404: {**PROBLEM, "description": "No such job"}},
)
def list_deliveries(job_id: JobId, session: SessionDep, owner: OwnerDep) -> DeliveryList:
    """Empty until the job finishes (or when it has no `callback_url`). A failed attempt is retried with
    exponential backoff up to the server's `ADVISOR_WEBHOOK_MAX_ATTEMPTS`."""
    job = queries.get_job(session, job_id, owner)
    return DeliveryList(items=[DeliveryOut.of(r) for r in webhooks.deliveries_of(session, job.id)])


@router.get("/v1/webhooks/secret", response_model=WebhookSecret, summary="Your webhook signing secret")
def get_webhook_secret(settings: SettingsDep, owner: OwnerDep) -> WebhookSecret:
    """Derived from the server's master secret and your API key: verify the events of your jobs with it."""
    master = webhooks.master_secret(settings.webhook_secret, settings.data_path)
    return WebhookSecret(secret=webhooks.owner_secret(master, owner))
