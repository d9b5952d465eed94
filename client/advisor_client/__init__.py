"""Python client for the Redundancy Advisor service (httpx + pydantic; no torch, no service code)."""

from advisor_client.client import Advisor, Job, job_body
from advisor_client.errors import (
    AdvisorError,
    ApiError,
    Conflict,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobIdNotResolved,
    JobNotSucceeded,
    NotFound,
    RateLimited,
    ServerError,
    ServerUnreachable,
    Unauthorized,
    WaitTimeout,
)
from advisor_client.http import RetryPolicy
from advisor_client.models import DatasetInfo, JobInfo, LayerResult, Problem, ProblemField, Recommendation

__all__ = [
    "Advisor",
    "AdvisorError",
    "ApiError",
    "Conflict",
    "DatasetInfo",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobIdNotResolved",
    "JobInfo",
    "JobNotSucceeded",
    "LayerResult",
    "NotFound",
    "Problem",
    "ProblemField",
    "RateLimited",
    "Recommendation",
    "RetryPolicy",
    "ServerError",
    "ServerUnreachable",
    "Unauthorized",
    "WaitTimeout",
    "job_body",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`verify_webhook` and `WebhookVerificationError` from `advisor_client.webhooks`, loaded on first use:
    they need the optional `standardwebhooks` (`pip install './client[webhooks]'`)."""
    if name in ("verify_webhook", "WebhookVerificationError"):
        from advisor_client import webhooks  # lazy: the optional extra is imported only by receivers

        return getattr(webhooks, name)
    raise AttributeError(f"module 'advisor_client' has no attribute {name!r}")
