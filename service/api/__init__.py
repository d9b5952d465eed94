"""The HTTP layer: FastAPI app, routes, request/response schemas, auth, problem+json. Depends on the job
core (``service.core``) only; jobs leave through a ``JobQueue`` it is given (see ``service.main``)."""
