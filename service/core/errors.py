"""What can go wrong with a job, in the job's own terms. The API turns each into problem+json in one
place (``service.api.errors.problem_for``); the core never speaks HTTP."""

from __future__ import annotations

from service.core.status import JobStatus


class JobError(Exception):
    """Base of the core's domain errors; ``str(exc)`` is a sentence for a person."""


class NotFound(JobError):
    """The thing asked for does not exist (or belongs to another owner)."""


class Conflict(JobError):
    """The request is valid but the job's state does not allow it."""


class InvalidInput(JobError):
    """A value the caller passed cannot be used: ``field`` and ``reason`` say which and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid value for `{field}`: {reason}")
        self.field, self.reason = field, reason


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"No job with id {job_id!r}.")
        self.job_id = job_id


class ResultMissing(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} has no stored result.")
        self.job_id = job_id


class IdempotencyConflict(Conflict):
    """The idempotency key was already used with another request body."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used with a different request body (job {job_id})."
        )
        self.key, self.job_id = key, job_id


class AlreadyFinished(Conflict):
    """Cancel of a job that already succeeded or failed."""

    def __init__(self, job_id: str, status: JobStatus) -> None:
        super().__init__(f"Job {job_id} already {status}; there is nothing to cancel.")
        self.job_id, self.status = job_id, status


class NotFinished(Conflict):
    """Delete of a job that is still queued or running."""

    def __init__(self, job_id: str, status: JobStatus) -> None:
        super().__init__(f"Job {job_id} is {status}; only finished jobs can be deleted.")
        self.job_id, self.status = job_id, status


class NotSucceeded(Conflict):
    """A result (report, curve, recommendation) asked of a job that has not succeeded."""

    def __init__(self, job_id: str, status: JobStatus) -> None:
        super().__init__(f"Job {job_id} is {status}; results exist only for succeeded jobs.")
        self.job_id, self.status = job_id, status


class Unavailable(JobError):
    """The database cannot serve the request now (no free connection in time, or unreachable); the
    caller should retry after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(f"The service is busy or its database is unreachable ({reason}); retry shortly.")
        self.retry_after = retry_after
