"""Celery app and tasks: run a job's stages, report progress, persist results."""
