"""The artifact store (``Settings.artifact_path``): a job's layer statistics as a file, and the heads built
from them. (A sharded job's shard files live in the other store, the shard store of :mod:`service.core.store`.)

A succeeded ridge job keeps the sufficient statistics of the rows its probe was fitted on (`n`, `Σx`,
`XᵀX`, class sums: `redundancy.deploy.save_stats`) as one file in the store, so that a head for any δ
can be fitted later without the images. The database holds a reference (`JobStats`: the file's
absolute path, its sha256 and size, and the model facts an artifact records), never the statistics.

Layout, one directory per job::

    <artifact_path>/<job id>/stats-<attempt>.npz             the statistics (written by the worker)
    <artifact_path>/<job id>/heads/<etag>/<name>.safetensors  a built head and its .json model card

Writes (the worker, :func:`keep_stats`) happen **before** the success commit and the reference is
added in that same transaction (:func:`service.core.lifecycle.succeed`), so a job that reads as
succeeded already has its statistics, or the reason it has none. Deleting the job deletes its
directory (:func:`remove_job_files`, from :func:`service.core.lifecycle.delete`).

Reads (the API): :func:`plan_artifact` resolves a δ to its recommendation and an ETag without
touching the file; :func:`materialise` fits the head (or finds it already built) and returns the files.

A retrieval job's artifact has no head: the kept dimensions only (`redundancy.deploy.build_retrieval_artifact`).
Its random subset, first k and random projection need no statistics (they are drawn from the report's
seeds) and are built into the local cache (``Settings.stats_cache_dir``); its PCA needs the corpus
statistics, which the worker keeps for a retrieval job as for a ridge one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsspec.core import url_to_fs
from pydantic import ValidationError
from sqlalchemy.orm import Session

from redundancy import __version__
from redundancy.config import data_config_as_json
from redundancy.deploy import ArtifactError, load_stats, save_artifact, save_stats
from redundancy.deploy.artifact import FORMAT, RETRIEVAL_FORMAT, card_path
from redundancy.deploy.export import artifact_name
from redundancy.deploy.layers import layer_report, layer_stats
from redundancy.deploy.methods import build_method_artifact
from redundancy.deploy.onnx_export import to_onnx
from redundancy.deploy.retrieval import build_retrieval_artifact
from redundancy.errors import RedundancyError
from redundancy.report import Recommendation, Report
from redundancy.sources.stats import GramStats
from service.core import results
from service.core.config import Settings, get_settings
from service.core.errors import ArtifactGone, ArtifactNotSupported, ArtifactUnavailable
from service.core.models import Job, JobStats, utcnow
from service.core.store import ShardStore

if TYPE_CHECKING:
    from redundancy.pipeline import Analysis  # the type only: the API process never loads the pipeline

log = logging.getLogger("service.core.artifacts")

STATS_PREFIX = "stats-"
_BUILD_LOCK = threading.Lock()


def job_dir(store: Path, job_id: str) -> Path:
    return store / job_id


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# the worker: keep the statistics, before the success commit


@dataclass(frozen=True)
class KeptStats:
    """What the worker kept for a job: a file (path, sha256, size, model facts) or the reason why not."""

    path: Path | str | None = None  # a local path, or the URL of a remote store's file (issue 23)
    sha256: str | None = None
    size_bytes: int | None = None
    weights_sha256: str | None = None
    data_config: dict[str, Any] | None = None
    reason: str | None = None


RETRIEVAL_NO_STATS = (
    "a retrieval job's PCA artifact needs the corpus statistics, and none were kept for this job (it ran before "
    "retrieval artifacts existed): submit it again, or ask for method random_subset, first_k or random_projection")


def is_remote(path: str | Path | None) -> bool:
    return path is not None and "://" in str(path) and not str(path).startswith("file://")


def keep_stats(
    store: Path, job_id: str, attempt: int, analysis: Analysis, remote: str | None = None
) -> KeptStats:
    """Write the analysis's statistics to ``<store>/<job id>/stats-<attempt>.npz``. A problem with the
    store never fails the analysis: the returned record then carries the reason instead of a path.

    With `remote` (the URL of a remote store, issue 23) the file is then uploaded to
    ``<remote>/jobs/<job id>/stats-<attempt>.npz``, the reference is that URL, and the local file is removed."""
    report = analysis.report
    retrieval = report.config.task == "retrieval"  # no head; its PCA artifact reads the corpus statistics
    if report.probe != "ridge" and not retrieval:
        return KeptStats(reason=f"the {report.probe} probe's heads cannot be refitted from statistics")
    if analysis.stats is None or (analysis.model_facts is None and not retrieval):
        return KeptStats(reason="the engine returned no layer statistics for this job")
    weights_sha256, data_config = analysis.model_facts or (None, None)
    path = job_dir(store, job_id) / f"{STATS_PREFIX}{attempt}.npz"
    try:
        save_stats(analysis.stats, path)
        sha, size = _sha256_file(path), path.stat().st_size
        kept_at: Path | str = path.resolve()
        if remote:
            shard_store = ShardStore(remote)
            key = shard_store.stats_key(job_id, path.name)
            shard_store.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
            shard_store.fs.put_file(str(path), key)
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # the local directory was only the staging place of the upload
            kept_at = shard_store.url(key)
        return KeptStats(
            path=kept_at, sha256=sha, size_bytes=size,
            weights_sha256=weights_sha256,
            data_config=None if data_config is None else data_config_as_json(data_config),
        )
    except Exception as exc:  # noqa: BLE001 - a full disk or a bad mount must not fail the analysis
        discard(KeptStats(path=path))
        log.error("job %s: could not keep its statistics in %s: %s", job_id, store, exc)
        return KeptStats(reason=f"the statistics could not be written to the artifact store ({exc})"[:2000])


def add_stats_row(session: Session, job_id: str, kept: KeptStats) -> None:
    """Add the reference to ``session``; the caller commits it with the status change."""
    session.add(JobStats(
        job_id=job_id, path=str(kept.path) if kept.path else None, sha256=kept.sha256, size_bytes=kept.size_bytes,
        weights_sha256=kept.weights_sha256, data_config=kept.data_config, reason=kept.reason, created_at=utcnow(),
    ))


def discard(kept: KeptStats) -> None:
    """Remove a file kept for a result that was not stored (the job changed hands, or the write failed)."""
    if kept.path is None:
        return
    if is_remote(kept.path):
        try:
            fs, key = url_to_fs(str(kept.path))
            fs.rm(key)
        except OSError as exc:
            log.warning("could not remove %s: %s", kept.path, exc)
        return
    Path(kept.path).unlink(missing_ok=True)


def remove_job_files(stats_path: str | None, job_id: str, settings: Settings | None = None) -> None:
    """Delete the job's files: its directory in the store (statistics, every attempt's, built heads),
    and with `settings`, its shard files and the local caches of a remote store."""
    if settings is not None:
        try:
            ShardStore(settings.store_root).drop_job(job_id)  # <store>/jobs/<id>: shards, remote statistics
        except OSError as exc:
            log.warning("job %s: could not remove its files from the store: %s", job_id, exc)
        shutil.rmtree(settings.stats_cache_dir / job_id, ignore_errors=True)
    elif is_remote(stats_path):
        fs, key = url_to_fs(str(stats_path))
        directory = key.rsplit("/", 1)[0]
        if directory.rsplit("/", 1)[-1] == job_id and fs.exists(directory):
            fs.rm(directory, recursive=True)
    if not stats_path or is_remote(stats_path):
        return
    directory = Path(stats_path).parent
    if directory.name != job_id:  # never remove a directory that is not this job's own
        log.warning("job %s: its statistics %s are not in its own directory; removing the file only",
                    job_id, stats_path)
        Path(stats_path).unlink(missing_ok=True)
        return
    shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the API: a head for any δ


@dataclass(frozen=True)
class ArtifactPlan:
    """What a request for an artifact resolves to, before any file is read."""

    job_id: str
    report: Report
    recommendation: Recommendation
    stats: JobStats | None  # None: a retrieval artifact that needs no statistics
    etag: str
    filename: str
    method: str = "random_subset"
    fmt: str = "safetensors"


def _stats_row(session: Session, job: Job) -> JobStats:
    row = session.get(JobStats, job.id)
    if row is None:
        raise ArtifactUnavailable(
            job.id, "no layer statistics were kept for this job (it ran before the artifact store existed); "
            "submit it again to get artifacts")
    if row.path is None:
        raise ArtifactUnavailable(job.id, row.reason or "no layer statistics were kept for this job")
    return row


def _retrieval_stats_row(session: Session, job: Job, method: str) -> JobStats | None:
    """A retrieval artifact reads statistics for its PCA only (the corpus's principal axes)."""
    if method != "pca":
        return None
    row = session.get(JobStats, job.id)
    if row is None or row.path is None:
        raise ArtifactUnavailable(job.id, RETRIEVAL_NO_STATS)
    return row


def plan_artifact(
    session: Session, job: Job, *, delta: float, delta_mode: str | None, criterion: str | None,
    method: str = "random_subset", fmt: str = "safetensors", layer: str | None = None,
) -> ArtifactPlan:
    """The recommendation for δ (with `layer`, that swept layer's alone), the
    statistics reference and the ETag: a hash of the job, the statistics file's sha256, the
    recommendation and the artifact format and engine version, so equal inputs give the same head."""
    stored = results.load_report(session, job)  # NotSucceeded for a job that has not succeeded
    try:
        report = Report.model_validate(stored)
    except ValidationError as exc:
        raise ArtifactUnavailable(
            job.id, f"its stored report was written by another engine version and cannot be read "
            f"({exc.error_count()} field errors)") from exc
    retrieval = report.config.task == "retrieval"
    if report.probe != "ridge" and not retrieval:
        raise ArtifactNotSupported(
            job.id, "probe", f"a head is refitted from the layer statistics, which needs the ridge probe; this "
            f"job used the {report.probe!r} probe (submit it again with probe=ridge)")
    row = _retrieval_stats_row(session, job, method) if retrieval else _stats_row(session, job)
    rec = results.recommend_for(session, job, delta=delta, delta_mode=delta_mode, criterion=criterion, layer=layer)
    report = _layer_view(job.id, report, rec.layer)
    key = json.dumps(
        {"job": job.id, "stats": row.sha256 if row else None,
         "recommendation": rec.model_dump(mode="json", by_alias=True),
         "format": RETRIEVAL_FORMAT if retrieval else FORMAT, "engine": __version__, "method": method,
         "file_format": fmt},
        sort_keys=True, separators=(",", ":"),
    )
    return ArtifactPlan(
        job_id=job.id, report=report, recommendation=rec, stats=row,
        etag=hashlib.sha256(key.encode()).hexdigest()[:32], filename=method_file_name(report, rec, method, fmt),
        method=method, fmt=fmt,
    )


def _layer_view(job_id: str, report: Report, layer: str | None) -> Report:
    """A sweep: the report seen from the answer's layer (`redundancy.deploy.layer_report`), whose block of the
    joined statistics the head is fitted from (`layer_stats`, in `_build`)."""
    try:
        return layer_report(report, layer)
    except ArtifactError as exc:
        raise ArtifactNotSupported(job_id, exc.field or "layer", exc.message) from exc


def materialise(plan: ArtifactPlan, cache: Path | None = None) -> Path:
    """The artifact file for the plan (its model card beside it): built once per ETag, kept in the
    job's directory, and served from there afterwards. Statistics in a remote store are copied into
    `cache` (``Settings.stats_cache_dir``) by sha256 and the heads are kept there (a cache of the store)."""
    stats_path: Path | None
    if plan.stats is None:  # a retrieval artifact drawn from the report alone: built into the local cache
        stats_path = None
        target = (cache or get_settings().stats_cache_dir) / plan.job_id / "heads" / plan.etag / plan.filename
    elif plan.stats.path is None:
        raise ArtifactUnavailable(plan.job_id, plan.stats.reason or "no layer statistics were kept for this job")
    elif is_remote(plan.stats.path):  # a remote store: a local copy by sha256, heads in the local cache
        if cache is None:
            cache = get_settings().stats_cache_dir
        stats_path = _local_stats(plan, cache)
        target = cache / plan.job_id / "heads" / plan.etag / plan.filename
    else:
        stats_path = Path(plan.stats.path)
        target = stats_path.parent / "heads" / plan.etag / plan.filename
    if target.is_file() and card_path(target).is_file():
        return target
    with _BUILD_LOCK:  # threads of one API process share a pid, and so `save_artifact`'s temporary names
        if target.is_file() and card_path(target).is_file():
            return target
        return _build(plan, stats_path, target)


def _local_stats(plan: ArtifactPlan, cache: Path) -> Path:
    """The statistics file of a remote store, copied into ``<cache>/<job id>/<sha256>.npz`` (checked against
    the recorded sha256; a cache, safe to delete, removed with the job)."""
    assert plan.stats is not None
    url, sha = str(plan.stats.path), plan.stats.sha256 or "unknown"
    local = cache / plan.job_id / f"{sha}.npz"
    if local.is_file():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fs, key = url_to_fs(url)
        fs.get_file(key, str(tmp))
    except FileNotFoundError as exc:
        tmp.unlink(missing_ok=True)
        raise ArtifactGone(plan.job_id, "its statistics are no longer in the store") from exc
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ArtifactUnavailable(plan.job_id, f"the store could not be read ({type(exc).__name__})") from exc
    if plan.stats.sha256 and _sha256_file(tmp) != plan.stats.sha256:
        tmp.unlink(missing_ok=True)
        raise ArtifactGone(plan.job_id, "its statistics in the store do not match their recorded sha256")
    os.replace(tmp, local)
    return local


def _load(plan: ArtifactPlan, stats_path: Path | None) -> GramStats | None:
    if stats_path is None:
        return None
    if not stats_path.is_file():
        raise ArtifactGone(plan.job_id, f"{stats_path} does not exist")
    try:
        return load_stats(stats_path)
    except RedundancyError as exc:  # unreadable or inconsistent (redundancy.sources.features_store)
        raise ArtifactGone(plan.job_id, exc.message) from exc


def _build(plan: ArtifactPlan, stats_path: Path | None, target: Path) -> Path:
    stats = _load(plan, stats_path)
    sha = plan.stats.weights_sha256 if plan.stats else None
    data_config = dict(plan.stats.data_config or {}) if plan.stats else {}
    try:
        if plan.report.config.task == "retrieval":
            art = build_retrieval_artifact(plan.report, plan.recommendation, plan.method, stats=stats,
                                           weights_sha256=sha, data_config=data_config)
        else:
            assert stats is not None
            art = build_method_artifact(plan.report, layer_stats(plan.report, stats), plan.recommendation,
                                        plan.method, weights_sha256=sha or "", data_config=data_config)
    except ArtifactError as exc:
        if exc.field in ("method", "layer"):  # a baseline the job did not run (or no head at its k); a swept layer
            raise ArtifactNotSupported(plan.job_id, exc.field, exc.message) from exc  # whose statistics were not kept
        raise ArtifactUnavailable(plan.job_id, exc.message) from exc
    if plan.fmt != "onnx":
        return save_artifact(art, target)
    save_artifact(art, target.with_suffix(".safetensors"))  # the model card beside both
    try:
        blob = to_onnx(art)
    except ImportError as exc:
        raise ArtifactNotSupported(plan.job_id, "format", "this server has no ONNX support (the optional extra "
                                   "`onnx` is not installed)") from exc
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, target)
    return target


def method_file_name(report: Report, rec: Recommendation, method: str, fmt: str) -> str:
    """`artifact_name`, with the method (other than random_subset) and the file format's suffix."""
    name = artifact_name(report, rec)
    if method != "random_subset":
        name = name.removesuffix(".safetensors") + f"_{method}.safetensors"
    return name if fmt == "safetensors" else name.removesuffix(".safetensors") + ".onnx"


def card_of(path: Path) -> dict[str, Any]:
    """The JSON model card written beside an artifact file."""
    return dict(json.loads(card_path(path).read_text()))
