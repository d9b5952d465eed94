"""The job core: settings, database, the JobStatus enum, every job transition and the domain errors.

It imports neither FastAPI nor Celery (``lint-imports`` enforces it): the API (``service.api``) and the
workers (``workers``) both build on it and never on each other. Map: ``docs/architecture.md``.
"""
