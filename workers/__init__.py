"""The Celery workers: claim a job, run ``redundancy.analyze``, report progress, store the result, all through
the job core's transitions (``service.core.lifecycle``). Never imports the API."""
