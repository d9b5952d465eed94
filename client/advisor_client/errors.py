"""Exceptions: every failure a caller may want to tell apart, each carrying what the server said."""

from __future__ import annotations

from typing import Any

from advisor_client.models import JobInfo, Problem, ProblemField


class AdvisorError(Exception):
    """Base of every error this client raises."""


class ServerUnreachable(AdvisorError):
    """No HTTP answer (connection refused, DNS, timeouts) after the bounded retries."""


class JobIdNotResolved(AdvisorError, LookupError):
    """A job id prefix that is too short, matches none of your jobs, or matches several."""


class ApiError(AdvisorError):
    """The server answered with an error (`application/problem+json`): its fields are attributes."""

    def __init__(self, problem: Problem, *, method: str = "", url: str = "") -> None:
        self.problem = problem
        self.method, self.url = method, url
        super().__init__(self._line())

    # The problem+json fields, flat.
    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def detail(self) -> str | None:
        return self.problem.detail

    @property
    def errors(self) -> list[ProblemField]:
        return list(self.problem.errors or [])

    @property
    def fields(self) -> dict[str, str]:
        """`{field: reason}` for a validation error (empty otherwise)."""
        return {e.field: e.reason for e in self.errors}

    def to_dict(self) -> dict[str, Any]:
        return self.problem.model_dump(mode="json", exclude_none=True)

    def _line(self) -> str:
        where = "; ".join(f"[{e.field}] {e.reason}" for e in self.errors)
        text = where or self.detail or self.title
        return f"{self.status} {self.title}: {text}"


class InvalidRequest(ApiError):
    """400 / 422: the request is wrong; `fields` names what and why."""


class Unauthorized(ApiError):
    """401 / 403: missing or wrong API key."""


class NotFound(ApiError):
    """404: no such job (or not yours)."""


class Conflict(ApiError):
    """409: e.g. the job has no result yet, or an Idempotency-Key was reused with another body."""


class RateLimited(ApiError):
    """429 after every retry."""


class ServerError(ApiError):
    """5xx after every retry (503) or at once (500)."""


def error_for(problem: Problem, *, method: str = "", url: str = "") -> ApiError:
    """The exception class for an error status."""
    s = problem.status
    cls: type[ApiError]
    if s in (400, 422):
        cls = InvalidRequest
    elif s in (401, 403):
        cls = Unauthorized
    elif s == 404:
        cls = NotFound
    elif s == 409:
        cls = Conflict
    elif s == 429:
        cls = RateLimited
    elif s >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(problem, method=method, url=url)


class WaitTimeout(AdvisorError, TimeoutError):
    """`job.wait(timeout=…)` ran out before the job finished; the job goes on unless cancelled."""

    def __init__(self, job: JobInfo, timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        super().__init__(
            f"job {job.id} is still {job.status} after {timeout:g} s (stage {job.stage or '-'}, "
            f"{100 * job.progress:.0f}%)"
        )


class JobNotSucceeded(AdvisorError):
    """The job ended without a result: `JobFailed` or `JobCancelled`. `job` is its last snapshot."""

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        super().__init__(self._line())

    def _line(self) -> str:
        return f"job {self.job.id} ended {self.job.status}"


class JobFailed(JobNotSucceeded):
    """The job failed; `job.error` has the server's `{code, message, field}`."""

    def _line(self) -> str:
        err = self.job.error
        what = f"{err.code}: {err.message}" if err else "no error recorded"
        return f"job {self.job.id} failed ({what})"


class JobCancelled(JobNotSucceeded):
    """The job was cancelled."""
