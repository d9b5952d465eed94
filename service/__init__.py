"""The Redundancy Advisor REST service: FastAPI routes, settings, database models."""
