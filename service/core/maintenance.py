"""Lost messages must not lose jobs.

The database is the truth. Periodically (in the API process, and once when a worker starts):

* a **queued** job whose message was never sent, or was sent ``ADVISOR_REQUEUE_AFTER`` seconds ago
  (doubling with each resend, capped at 32x and at ``ADVISOR_REQUEUE_MAX_AFTER``, 300 s) and not picked up,
  is enqueued again: a job whose message is gone is re-sent within a bounded time;
* a **running** job whose worker stopped heart-beating for ``ADVISOR_STALE_AFTER`` seconds (killed,
  OOM, machine lost), or whose worker process is known dead (same host, its pid gone: at once,
  :mod:`service.core.process`) is put back to queued and enqueued again, or failed with ``worker_lost`` after
  ``MAX_ATTEMPTS`` attempts (or cancelled, if a cancel was asked for);
* a job waiting in the **gpu queue** past its ``device_fallback_after`` moves to the cpu queue and is sent
  there (:mod:`service.core.placement`), and every job still waiting there gets the gpu queue's depth and the
  number of live workers consuming it (their own beats in the database, :mod:`service.core.presence`).

Duplicate messages are harmless: a worker claims a job with a conditional UPDATE, so only one wins.
They are still kept out of the broker: given a :class:`~service.core.queue.BrokerProbe`, a round
resends at most ``queued jobs − messages waiting`` messages (the longest-unsent first), so a message
still waiting is not sent twice and the broker's backlog never exceeds the number of queued jobs,
however long the workers are busy.
The transitions themselves are in :mod:`service.core.lifecycle`.
"""

from __future__ import annotations

import datetime as dt
import logging

from service.core import lifecycle, placement, presence, queries, tracing
from service.core.config import Settings
from service.core.db import session_scope
from service.core.housekeeping import maybe_gc
from service.core.lifecycle import MAX_ATTEMPTS
from service.core.models import as_utc, utcnow
from service.core.periodic import Periodic
from service.core.process import known_dead
from service.core.queue import ROUTES, BrokerProbe, JobQueue, queue_name, send_job

log = logging.getLogger("service.maintenance")

__all__ = ["MAX_ATTEMPTS", "MaintenanceThread", "run_maintenance_once"]


def resend_budget(queued: int, probe: BrokerProbe | None) -> int | None:
    """How many messages a round may send: the queued jobs that have no message waiting (None: no
    probe, or the depth cannot be read; then the time-based backoff alone decides)."""
    depth = probe.depth() if probe is not None else None
    return None if depth is None else max(0, queued - depth)


def route_budgets(routes: dict[str, str], probe: BrokerProbe | None) -> dict[str, int] | None:
    """The same per device queue: the queued jobs routed to it that have no message waiting in it (so messages
    left in the gpu queue by jobs that fell back to cpu never hold back a cpu job's resend). None: the probe
    cannot read one queue's depth; then :func:`resend_budget` decides."""
    depth_of = getattr(probe, "depth_of", None)  # the Celery queue's; a plain BrokerProbe has only depth()
    if depth_of is None:
        return None
    budgets: dict[str, int] = {}
    for route in ROUTES:
        depth = depth_of(route)
        if depth is None:
            return None
        budgets[route] = max(0, sum(1 for r in routes.values() if r == route) - depth)
    return budgets


def run_maintenance_once(settings: Settings, queue: JobQueue, probe: BrokerProbe | None = None) -> dict[str, int]:
    now = utcnow()
    requeued = revived = failed = 0
    with session_scope(settings.db_url) as s:
        queued = queries.queued_jobs(s)
        routes = placement.queued_routes(s)
    per_route = route_budgets(routes, probe)
    budget = resend_budget(len(queued), probe) if per_route is None else None
    due_rows = []
    for row in queued:
        created, sent = as_utc(row.created_at), as_utc(row.enqueued_at)
        if sent is None:
            due = created is not None and (now - created).total_seconds() > 2.0
        else:
            backoff = min(settings.requeue_max_after,
                          settings.requeue_after * 2 ** min(max(row.enqueue_count - 1, 0), 5))
            due = (now - sent).total_seconds() > backoff
        if due:
            due_rows.append(row)
    # FIFO broker: the messages still waiting are the most recently sent ones, so the longest-unsent
    # jobs are the ones whose messages are lost.
    due_rows.sort(key=lambda r: as_utc(r.enqueued_at or r.created_at))
    if per_route is not None:
        due_rows = [row for row in due_rows if _take(per_route, routes.get(row.id, "cpu"))]
    for row in due_rows[:budget]:
        if resend(settings, row.id, row.enqueue_count, queue):
            requeued += 1

    stale_before = now - dt.timedelta(seconds=settings.stale_after)
    with session_scope(settings.db_url) as s:
        for row in queries.running_jobs(s):
            dead = row.worker if known_dead(row.worker) else None
            beat = as_utc(row.heartbeat_at)
            if dead is None and beat is not None and beat >= stale_before:
                continue  # its worker is alive, or may be
            if row.cancel_requested:
                lifecycle.cancel_stale(s, row.id, row.attempts, stale_before, dead_owner=dead)
            elif row.attempts >= MAX_ATTEMPTS:
                failed += lifecycle.fail_stale(s, row.id, row.attempts, stale_before, dead_owner=dead)
            else:
                revived += lifecycle.requeue_stale(s, row.id, row.attempts, stale_before, dead_owner=dead)
    fell_back = fall_back_due(settings, now, probe)
    if revived or fell_back:
        # They are queued with enqueued_at NULL now; send them right away.
        with session_scope(settings.db_url) as s:
            ids = queries.unsent_jobs(s)
        for job_id in ids:
            resend(settings, job_id, None, queue)
    maybe_gc(settings)  # retention, the feature cache's cap, orphans: at most every store_gc_interval
    stats = {"requeued": requeued, "revived": revived, "failed": failed, "fell_back": fell_back}
    if any(stats.values()):
        log.warning("maintenance: %s", stats)
    return stats


def _take(budgets: dict[str, int], route: str) -> bool:
    if budgets.get(route, 0) <= 0:
        return False
    budgets[route] -= 1
    return True


def fall_back_due(settings: Settings, now: dt.datetime, probe: BrokerProbe | None) -> int:
    """Move the gpu-queue jobs past their fallback time to the cpu queue (left unsent: the caller sends them);
    note the gpu queue's depth and live workers on those still waiting. Returns how many fell back."""
    moved = 0
    with session_scope(settings.db_url) as s:
        for job_id, waited in placement.due_fallbacks(s, now):
            if lifecycle.fall_back_to_cpu(s, job_id, waited):
                log.warning("job %s: no gpu worker took it within %g s; fell back to the cpu queue", job_id, waited)
                moved += 1
        if placement.waiting_on_gpu(s):
            depth_of = getattr(probe, "depth_of", None)  # a BrokerProbe of the Celery queue has it
            alive = presence.alive(s, queue_name(settings.queue, "gpu"), settings.stale_after, now)
            placement.note_gpu_wait(s, depth_of("gpu") if depth_of is not None else None, alive, settings.stale_after)
    return moved


def resend(settings: Settings, job_id: str, seen_count: int | None, queue: JobQueue) -> bool:
    """Claim the right to resend (so two API replicas do not both resend), then send to the job's device queue,
    in the trace of the request that submitted it (its message carries that context: the worker's spans join the
    job's one trace however often it is sent, by the outbox, the sweep or a starting worker)."""
    with session_scope(settings.db_url) as s:
        if not lifecycle.mark_sent(s, job_id, seen_count=seen_count):
            return False
        route, trace_context = queries.send_target(s, job_id)
    try:
        with tracing.continued(trace_context):
            send_job(queue, job_id, route)
    except Exception:  # noqa: BLE001 - broker down: try again next round
        log.warning("could not enqueue job %s", job_id, exc_info=True)
        with session_scope(settings.db_url) as s:
            lifecycle.unmark_sent(s, job_id)
        return False
    return True


class MaintenanceThread(Periodic):
    """Runs :func:`run_maintenance_once` every ``interval`` seconds in a daemon thread."""

    def __init__(self, settings: Settings, queue: JobQueue, interval: float, probe: BrokerProbe | None = None) -> None:
        super().__init__("advisor-maintenance", interval, lambda: run_maintenance_once(settings, queue, probe),
                         log=log, failed="maintenance round failed")
