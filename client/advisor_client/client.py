"""`Advisor` (the service) and `Job` (one analysis on it).

    from advisor_client import Advisor

    advisor = Advisor("http://advisor:8000", api_key="...")
    job = advisor.submit(model={"name": "tf_efficientnet_lite0", "weights": "bundled"},
                         dataset="digits", deltas=[0.01, 0.05], delta_mode="absolute")
    job.wait(timeout=3600, progress=True)          # raises JobFailed / JobCancelled / WaitTimeout
    rec = job.recommendation(delta=0.01)           # f*, k of d neurons, fairness cost

    upload = advisor.upload("vectors.npz")         # your own embeddings (docs/embeddings.md)
    job = advisor.submit(model={"name": "tf_efficientnet_lite0"}, dataset=upload.spec)
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from advisor_client.errors import JobCancelled, JobFailed, JobIdNotResolved, WaitTimeout
from advisor_client.http import Http, RetryPolicy
from advisor_client.models import (
    Criterion,
    DatasetInfo,
    DatasetPage,
    DeltaMode,
    JobInfo,
    JobPage,
    JobStatus,
    LayerResult,
    Recommendation,
)
from advisor_client.progress import ProgressBar

DEFAULT_URL = "http://127.0.0.1:8000"
PLOT_FORMATS = {".png": "plot.png", ".svg": "plot.svg"}


MIN_ID_PREFIX = 6  # characters of a job id that identify it (the UI shows 8)
FULL_ID_CHARS = 36  # a UUID


class Advisor:
    """A Redundancy Advisor server.

    `url` defaults to `$ADVISOR_URL` (else http://127.0.0.1:8000), `api_key` to `$ADVISOR_API_KEY`
    (sent as `X-API-Key`; a server without keys ignores it). `retry` sets the network manners (see
    `advisor_client.http`); `transport` swaps the HTTP transport (tests, proxies)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("ADVISOR_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("ADVISOR_API_KEY")
        self.http = Http(
            self.url,
            headers={"X-API-Key": key} if key else {},
            timeout=timeout,
            retry=retry or RetryPolicy(),
            transport=transport,
        )

    def __enter__(self) -> Advisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"Advisor({self.url!r})"

    # ---- jobs -----------------------------------------------------------------------------
    def submit(
        self,
        model: str | Mapping[str, Any],
        dataset: str | Mapping[str, Any],
        deltas: list[float] | None = None,
        *,
        idempotency_key: str | None = None,
        layers: list[str] | str | None = None,
        **options: Any,
    ) -> Job:
        """Submit an analysis; returns at once with the queued job.

        `layers`: the layer sweep, a list of module names (and/or `pre_logits`) or `"sweep"` (every stage
        plus `pre_logits`); the answer is then the (layer, k) with the fewest kept neurons (see :meth:`Job.layers`).

        `model` is a timm name or `{"name", "weights"}`; `dataset` a spec (`"digits"`, `"npz:PATH"`,
        ...) or `{"spec", "max_train", "max_test"}`; `options` are the other fields of the job body
        (`delta_mode`, `fractions`, `seeds`, `probe`, `image_size`, ...). One `Idempotency-Key` is
        generated per call (or pass your own) and sent on every retry, so a retried submit never
        creates a second job."""
        body = job_body(model, dataset, deltas, layers=layers, **options)
        key = idempotency_key or f"advisor-client-{uuid.uuid4()}"
        resp = self.http.request("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
        return Job(self, JobInfo.model_validate(resp.json()))

    def job(self, job_id: str) -> Job:
        """An existing job, fetched now: its full id, or a unique prefix of it (see :meth:`resolve_id`)."""
        return Job(self, self._get_info(self.resolve_id(job_id)))

    def resolve_id(self, job_id: str) -> str:
        """The full id of the job whose id is ``job_id`` or starts with it: the short ids the web UI and
        the progress lines show work wherever an id does. A prefix has at least
        :data:`MIN_ID_PREFIX` characters and matches exactly one of your jobs; :class:`JobIdNotResolved`
        otherwise (it names the candidates of an ambiguous one)."""
        text = job_id.strip().lower()
        if len(text) >= FULL_ID_CHARS:
            return job_id
        if len(text) < MIN_ID_PREFIX:
            raise JobIdNotResolved(f"job id {job_id!r} is too short: give the full id or at least "
                                   f"{MIN_ID_PREFIX} of its first characters")
        matches = [job.id for job in self.jobs(page_size=200) if job.id.lower().startswith(text)]
        if not matches:
            raise JobIdNotResolved(f"no job of yours has an id starting with {job_id!r}; list them with `advisor jobs`")
        if len(matches) > 1:
            raise JobIdNotResolved(f"job id prefix {job_id!r} is ambiguous: it starts {len(matches)} jobs "
                                   f"({', '.join(matches[:5])}); give more characters")
        return matches[0]

    def jobs(
        self,
        status: JobStatus | None = None,
        *,
        model: str | None = None,
        dataset: str | None = None,
        page_size: int = 50,
    ) -> Iterator[Job]:
        """Every job visible to this key, newest first, fetching page after page as you iterate."""
        token: str | None = None
        while True:
            params = {"status": status, "model": model, "dataset": dataset, "page_size": page_size,
                      "page_token": token}
            page = JobPage.model_validate(self.http.request("GET", "/v1/jobs", params=params).json())
            for info in page.items:
                yield Job(self, info)
            token = page.next_page_token
            if not token:
                return

    # ---- uploaded datasets ---------------------------------------------------------------
    def upload(self, path: str | os.PathLike[str]) -> DatasetInfo:
        """Upload a file of embeddings (`.npz`, `.parquet` or `.safetensors`; the extension names the
        format) and return the upload. Submit a job on it with `dataset=upload.spec` (or
        `{"spec": upload.spec, "label_column": ...}`). The same file again returns the same upload.
        A 429 (the key's upload quota) is raised at once, not retried."""
        file = Path(path)
        with file.open("rb") as fh:

            def files() -> dict[str, Any]:
                fh.seek(0)
                return {"file": (file.name, fh, "application/octet-stream")}

            resp = self.http.request("POST", "/v1/datasets", files=files, retry_statuses=frozenset({503}))
        return DatasetInfo.model_validate(resp.json())

    def dataset(self, upload_id: str) -> DatasetInfo:
        """One of this key's uploads."""
        return DatasetInfo.model_validate(self.http.request("GET", f"/v1/datasets/{upload_id}").json())

    def datasets(self, *, page_size: int = 50) -> Iterator[DatasetInfo]:
        """This key's uploads, newest first, page after page as you iterate."""
        token: str | None = None
        while True:
            params = {"page_size": page_size, "page_token": token}
            page = DatasetPage.model_validate(self.http.request("GET", "/v1/datasets", params=params).json())
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def delete_dataset(self, upload_id: str) -> None:
        """Delete an upload and its file (`Conflict` while a queued or running job reads it)."""
        self.http.request("DELETE", f"/v1/datasets/{upload_id}")

    def _get_info(self, job_id: str) -> JobInfo:
        return JobInfo.model_validate(self.http.request("GET", f"/v1/jobs/{job_id}").json())


def job_body(
    model: str | Mapping[str, Any],
    dataset: str | Mapping[str, Any],
    deltas: list[float] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The POST /v1/jobs body: strings become `{"name": …}` / `{"spec": …}`; unset options are left
    out so the server's defaults apply."""
    body: dict[str, Any] = {
        "model": {"name": model} if isinstance(model, str) else dict(model),
        "dataset": {"spec": dataset} if isinstance(dataset, str) else dict(dataset),
    }
    if deltas is not None:
        body["deltas"] = list(deltas)
    body.update({k: v for k, v in options.items() if v is not None})
    return body


class Job:
    """One job on the server. `info` is the latest snapshot; `refresh()` fetches a new one."""

    def __init__(self, advisor: Advisor, info: JobInfo) -> None:
        self.advisor = advisor
        self.info = info

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.status!r})"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def status(self) -> JobStatus:
        return self.info.status

    def refresh(self) -> JobInfo:
        self.info = self.advisor._get_info(self.id)
        return self.info

    def wait(
        self,
        timeout: float | None = None,
        progress: bool | ProgressBar = False,
        *,
        poll_interval: float = 1.0,
        check: bool = True,
    ) -> Job:
        """Poll until the job ends. `progress=True` draws a bar on stderr (stage, percent, images).

        Raises `WaitTimeout` after `timeout` seconds (the job goes on; cancel it if you must), and,
        with `check` (the default), `JobFailed` or `JobCancelled` when it did not succeed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = ProgressBar() if progress is True else (progress or None)
        try:
            while True:
                info = self.refresh()
                if bar is not None:
                    bar.update(info)
                if info.done:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WaitTimeout(info, float(timeout or 0.0))
                time.sleep(poll_interval if left is None else min(poll_interval, left))
        finally:
            if bar is not None:
                bar.close()
        if check:
            self.raise_for_status()
        return self

    def raise_for_status(self) -> None:
        """`JobFailed` / `JobCancelled` for a job that ended without a result (by the last snapshot)."""
        if self.info.status == "failed":
            raise JobFailed(self.info)
        if self.info.status == "cancelled":
            raise JobCancelled(self.info)

    def recommendation(
        self,
        delta: float | None = None,
        mode: DeltaMode | None = None,
        criterion: Criterion | None = None,
        *,
        max_dims: int | None = None,
        max_bytes: int | None = None,
        dtype: str | None = None,
        max_worst_class_drop: float | None = None,
        max_gini_increase: float | None = None,
        layer: str | None = None,
    ) -> Recommendation:
        """The minimal fraction within δ and its fairness cost, every method side by side and the verdict,
        from the stored curve. Unset arguments take the job's own (its first δ, its delta_mode, its
        criterion). A budget (`max_dims`, `max_bytes` at `dtype`: float32, float16, int8) fills
        `budget`; fairness limits (absolute) fill `constrained`. A layer sweep answers across its layers
        (`layer` on the answer names the chosen one); `layer` pins one swept layer (δ relative to its own full
        layer)."""
        params = {"delta": delta, "delta_mode": mode, "criterion": criterion, "max_dims": max_dims,
                  "max_bytes": max_bytes, "dtype": dtype, "max_worst_class_drop": max_worst_class_drop,
                  "max_gini_increase": max_gini_increase, "layer": layer}
        resp = self.advisor.http.request("GET", f"/v1/jobs/{self.id}/recommendation", params=params)
        return Recommendation.model_validate(resp.json())

    def recommendations(self) -> list[Recommendation]:
        """One recommendation per δ the job was submitted with."""
        deltas = self.info.request.get("deltas") or [None]
        return [self.recommendation(delta=d) for d in deltas]

    def layers(self) -> list[LayerResult]:
        """A layer sweep's layers from its report (one per swept layer, in forward order; a single-layer job:
        its one layer, or [] from an older server)."""
        return [LayerResult.model_validate(x) for x in self.report().get("layers") or []]

    def report(self) -> dict[str, Any]:
        """The engine's full report as stored (config, model, dataset, curve, summary, ...)."""
        report: dict[str, Any] = self.advisor.http.request("GET", f"/v1/jobs/{self.id}/result").json()
        return report

    def plot(self, path: str | os.PathLike[str], deltas: list[float] | None = None) -> Path:
        """Save the result's plot; the format follows the suffix (.png or .svg)."""
        out = Path(path)
        endpoint = PLOT_FORMATS.get(out.suffix.lower())
        if endpoint is None:
            raise ValueError(f"plot path must end in .png or .svg, not {out.name!r}")
        params = {"delta": list(deltas)} if deltas else None
        resp = self.advisor.http.request("GET", f"/v1/jobs/{self.id}/{endpoint}", params=params)
        out.write_bytes(resp.content)
        return out

    def cancel(self) -> JobInfo:
        """A queued job never starts; a running one stops at its next checkpoint and ends cancelled."""
        resp = self.advisor.http.request("POST", f"/v1/jobs/{self.id}/cancel")
        self.info = JobInfo.model_validate(resp.json())
        return self.info

    def delete(self) -> None:
        """Delete a finished job and its results."""
        self.advisor.http.request("DELETE", f"/v1/jobs/{self.id}")

    # ---- the deployable subset head (GET /v1/jobs/{id}/artifact) -------------------------
    def artifact(
        self,
        path: str | os.PathLike[str],
        delta: float | None = None,
        mode: DeltaMode | None = None,
        criterion: Criterion | None = None,
        *,
        method: str | None = None,
        fmt: str | None = None,
        layer: str | None = None,
    ) -> Path:
        """Save the artifact for the recommendation at δ (the kept neuron indices or projection, and
        the probe head) to `path`: `method` random_subset (default), first_k, pca, random_projection;
        `fmt` safetensors (default) or onnx; `layer` a swept layer (default: the answer's). Needs a server
        that serves `/v1/jobs/{id}/artifact`; an older one answers 404 (`NotFound`)."""
        out = Path(path)
        params = {"delta": delta, "delta_mode": mode, "criterion": criterion, "method": method, "format": fmt,
                  "layer": layer}
        resp = self.advisor.http.request("GET", f"/v1/jobs/{self.id}/artifact", params=params)
        out.write_bytes(resp.content)
        return out
