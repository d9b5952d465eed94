"""The one set of job statuses: the database column, its check constraint, the API schema and the list
filter all come from :class:`JobStatus`.

::

    queued ──claim──▶ running ──succeed──▶ succeeded
      │  ▲               │ └──────fail───▶ failed
      │  └───requeue─────┤ (worker lost)
      └──────cancel──────┴─────cancel───▶ cancelled

The check constraint ``ck_jobs_status_valid`` is built by :func:`status_check_sql` both in the model and
in migration 0001. Adding a member therefore needs a new migration that drops and recreates that
constraint (0001 then creates the wider one, and the new migration recreates it the same way).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """A finished job never changes status again (it can only be deleted)."""
        return self in FINISHED


FINISHED: frozenset[JobStatus] = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def status_check_sql(column: str = "status") -> str:
    """``status IN ('queued','running',...)``: the SQL of the jobs table's check constraint."""
    return f"{column} IN (" + ",".join(f"'{s.value}'" for s in JobStatus) + ")"
