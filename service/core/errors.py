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


class BadPageToken(InvalidInput):
    """A ``page_token`` this API did not issue (or one that no longer decodes)."""

    def __init__(self) -> None:
        super().__init__("page_token", "not a token this API issued")


class TooManyActiveJobs(Conflict):
    """The owner already has as many queued and running jobs as the server allows."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"You already have {limit} queued or running jobs, the most this server allows.")
        self.limit, self.retry_after = limit, retry_after


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


# ---- artifacts and multi-task answers (issue 12) ------------------------------------------------


class ArtifactUnavailable(Conflict):
    """The job succeeded, but no head can be built from what it kept; ``reason`` says why."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"No artifact for job {job_id}: {reason}")
        self.job_id, self.reason = job_id, reason


class ArtifactGone(JobError):
    """The job's statistics file was kept, but it is missing or unreadable in the artifact store now."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"The statistics of job {job_id} are gone from the artifact store: {reason}")
        self.job_id, self.reason = job_id, reason


class ArtifactNotSupported(JobError):
    """The job's analysis cannot give a head (e.g. a logistic probe): ``field`` and ``reason`` say why."""

    def __init__(self, job_id: str, field: str, reason: str) -> None:
        super().__init__(f"Job {job_id} cannot give an artifact: {reason}")
        self.job_id, self.field, self.reason = job_id, field, reason


class TasksMissing(Conflict):
    """A multi-task answer asked for datasets without a succeeded job on the model."""

    def __init__(self, datasets: list[str], model: str, weights: str | None) -> None:
        super().__init__(
            f"No succeeded job for model {model!r}" + (f" with weights {weights!r}" if weights else "")
            + f" on: {', '.join(datasets)}."
        )
        self.datasets, self.model, self.weights = datasets, model, weights


class TasksIncompatible(JobError):
    """The named datasets' latest jobs cannot share one subset (other weights, layer, width or seed)."""

    def __init__(self, field: str, reason: str, jobs: dict[str, str]) -> None:
        super().__init__(f"These jobs cannot share one subset: {reason}")
        self.field, self.reason, self.jobs = field, reason, jobs


class Unavailable(JobError):
    """The database cannot serve the request now (no free connection in time, or unreachable); the
    caller should retry after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(f"The service is busy or its database is unreachable ({reason}); retry shortly.")
        self.retry_after = retry_after


# ---- uploaded datasets (issue 19) ------------------------------------------------------------


class InvalidUpload(InvalidInput):
    """An upload (or a job's reference to one) that cannot be used: a part of the request body, unlike
    the core's other :class:`InvalidInput` (a query parameter); ``code`` is machine-readable."""

    def __init__(self, field: str, reason: str, code: str = "invalid_upload") -> None:
        super().__init__(field, reason)
        self.code = code


class UploadNotFound(NotFound):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"No uploaded dataset with id {upload_id!r}.")
        self.upload_id = upload_id


class UploadTooLarge(JobError):
    """The file streamed past ``ADVISOR_MAX_UPLOAD_BYTES``; nothing of it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The file is larger than {limit} bytes, the most this server accepts in one upload.")
        self.limit = limit


class UploadQuotaExceeded(JobError):
    """The key already holds as many uploaded files, or bytes, as the server allows."""

    def __init__(self, what: str, limit: int) -> None:
        unit = "files" if what == "files" else "bytes"
        super().__init__(f"This upload would take you past your quota of {limit} uploaded {unit}; "
                         "delete an upload first (DELETE /v1/datasets/{id}).")
        self.what, self.limit = what, limit


class UploadInUse(Conflict):
    """Delete of an upload that a queued or running job reads."""

    def __init__(self, upload_id: str, job_ids: list[str]) -> None:
        super().__init__(f"Upload {upload_id} is the dataset of {len(job_ids)} queued or running job(s); "
                         "delete it once they have finished (or cancel them).")
        self.upload_id, self.job_ids = upload_id, job_ids
