"""The Redundancy Advisor service: the job core (``service.core``), the HTTP API (``service.api``) and the
composition roots that wire them to Celery (``service.main``, ``service.cli``). Map: docs/architecture.md."""
