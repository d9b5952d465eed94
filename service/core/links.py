"""The URLs of a job's resources: the API's `links` and the links of a webhook event come from here."""

from __future__ import annotations

LINK_PATHS: dict[str, str] = {
    "self": "",
    "result": "/result",
    "recommendation": "/recommendation",
    "cancel": "/cancel",
    "plot_png": "/plot.png",
    "plot_svg": "/plot.svg",
    "deliveries": "/deliveries",
    "artifact": "/artifact",
}


def job_links(job_id: str, base_url: str = "") -> dict[str, str]:
    """``{name: url}`` of the job's resources; relative paths unless ``base_url`` is given."""
    root = f"{base_url.rstrip('/')}/v1/jobs/{job_id}"
    return {name: root + suffix for name, suffix in LINK_PATHS.items()}
