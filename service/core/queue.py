"""What the service needs from a broker, as interfaces: the core and the API hand a job to a worker
through :class:`JobQueue`, never through Celery. The Celery implementation (``send_task`` by name) is
``service.broker.CeleryQueue``, wired in by the composition root (``service.main`` / ``service.cli``);
the worker side is ``workers.celery_app``. Both configure Celery from :func:`celery_config`, so the
producer and the consumer cannot disagree on the task name, the queue or the broker options.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from service.core.config import Settings

RUN_JOB_TASK = "advisor.run_job"
"""The Celery task name both sides agree on (its one argument: the job id)."""
RUN_SHARD_TASK = "advisor.run_shard"
REDUCE_SHARDS_TASK = "advisor.reduce_shards"
"""A sharded job's tasks (issue 13), sent by a worker as a chord, never by the API."""


Route = Literal["cpu", "gpu"]
"""Which device queue a job waits in (issue 23): ``cpu`` or ``gpu``."""
ROUTES: tuple[Route, ...] = ("cpu", "gpu")
GPU_WAITING_STAGE = "waiting for a gpu worker"
"""The stage of a queued job in the gpu queue (``GET /v1/jobs/{id}``; its ``waiting`` gives the queue's depth)."""


def route_for(device: str | None, gpu_workers: bool) -> Route:
    """The one routing rule: ``cpu`` → the cpu queue; ``cuda`` (or ``cuda:N``) → the gpu queue; ``auto`` (or
    none) → the gpu queue only when the operator says gpu workers exist (``ADVISOR_GPU_WORKERS``), else cpu."""
    if device == "cpu":
        return "cpu"
    if device is not None and device.startswith("cuda"):
        return "gpu"
    return "gpu" if gpu_workers else "cpu"


def queue_name(base: str, route: str | None) -> str:
    """The broker queue of a route: ``<ADVISOR_QUEUE>.cpu`` or ``<ADVISOR_QUEUE>.gpu`` (no route: cpu).
    Producer, workers, the maintenance sweep and the depth reader all name queues through this."""
    return f"{base}.{route if route in ROUTES else 'cpu'}"


def device_queues(base: str) -> list[str]:
    """Every queue a worker with no ``--queues`` consumes: the device queues, and the bare ``ADVISOR_QUEUE``
    (messages sent before queues by device existed)."""
    return [base, *(queue_name(base, r) for r in ROUTES)]


def worker_queues(base: str, requested: str | None) -> list[str]:
    """``advisor worker --queues``: ``cpu``, ``gpu``, ``cpu,gpu``; none, or the bare ``ADVISOR_QUEUE``, means
    every device queue (so an embedded or single-worker setup runs everything); any other name is another
    API's ``ADVISOR_QUEUE`` (its bare and device queues), or a device queue named in full (``x.cpu``: as is)."""
    names: list[str] = []
    for part in (requested or base).split(","):
        part = part.strip()
        if not part:
            continue
        if part == base:
            names += device_queues(base)
        elif part in ROUTES:
            names.append(queue_name(base, part))
        elif part.rsplit(".", 1)[-1] in ROUTES:
            names.append(part)
        else:
            names += device_queues(part)
    return list(dict.fromkeys(names)) or device_queues(base)


def route_of_queue(base: str, name: str | None) -> Route | None:
    """The route of a queue :func:`queue_name` named (None: the bare queue, or another one)."""
    for route in ROUTES:
        if name == queue_name(base, route):
            return route
    return None


def run_device(route: str | None, worker_device: str, requested: str | None = "auto") -> str:
    """The device a job runs on: the worker's ``ADVISOR_DEVICE`` when it names one (an operator's override,
    e.g. ``cuda:1``, or ``cpu`` on a test host); else ``cuda`` for a job from the gpu queue, ``cpu`` for a job
    that asked for the cpu (``requested``, the job's ``device``), and otherwise ``auto``: the worker's own best
    (``cuda`` when it has one). So an ``auto`` job in the cpu queue, where it goes when no gpu workers are
    declared (``ADVISOR_GPU_WORKERS``), still uses the GPU of the worker that takes it (the embedded server
    on a GPU machine, one worker for every queue)."""
    if worker_device != "auto":
        return worker_device
    if route == "gpu":
        return "cuda"
    return "cpu" if requested == "cpu" else "auto"


def send_job(queue: JobQueue, job_id: str, route: str | None) -> None:
    """Hand ``job_id`` to ``queue`` for ``route``: through its ``enqueue_to`` when it has one (the Celery
    queue, which picks the device queue); a plain :class:`JobQueue` (an in-process fake) gets the id."""
    enqueue_to = getattr(queue, "enqueue_to", None)
    if enqueue_to is not None:
        enqueue_to(job_id, route)
    else:
        queue.enqueue(job_id)


class JobQueue(Protocol):
    def enqueue(self, job_id: str) -> None:
        """Ask a worker to run ``job_id``. May raise (broker down): the job stays queued in the database
        and the maintenance sweep sends it again."""


class BrokerProbe(Protocol):
    """What readiness and metrics ask of a real broker."""

    def ping(self) -> str | None:
        """None when reachable, else a short reason."""

    def depth(self) -> int | None:
        """Messages waiting in the job queue; None when it cannot be read."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings (plain data) shared by ``service.broker`` (sending) and ``workers.celery_app``.

    Long GPU jobs follow Celery's own guidance: late acks, reject on worker loss, prefetch 1, soft and
    hard limits, an explicit queue. The database is the truth about jobs; Celery's result backend
    exists only for the chord of a sharded job (shard results are kept, every other task's ignored).
    """
    transport_options: dict[str, object] = {}
    if settings.broker.startswith("sqla+sqlite"):
        transport_options["connect_args"] = {"timeout": 30}
    elif not settings.broker.startswith("sqla+"):
        # Redis: a message not acked within the visibility timeout is redelivered; it must outlast
        # the longest job, or a running job would be handed to a second worker.
        transport_options["visibility_timeout"] = settings.hard_time_limit + 600
        # a hung or dead Redis must fail a publish or a probe in seconds, not hold its caller
        transport_options["socket_timeout"] = settings.broker_timeout
        transport_options["socket_connect_timeout"] = settings.broker_timeout
    return {
        # Every send names its device queue (``queue_name``). The bare ADVISOR_QUEUE stays the default: a worker
        # with no --queues consumes it, which ``workers.celery_app`` widens to every device queue.
        "task_default_queue": settings.queue,
        "task_create_missing_queues": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.hard_time_limit,
        "task_ignore_result": True,
        "task_track_started": False,
        "result_backend": settings.result_backend,
        "result_expires": 86400,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker_timeout,
        "broker_transport_options": transport_options,
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_max_tasks_per_child": None,
    }
