"""Uploaded datasets (issue 19): a file of embeddings a key sends with ``POST /v1/datasets``, kept in the
artifact store (the same fsspec store as the shard files, :class:`~service.core.store.ShardStore`),
named by a job as ``{"dataset": {"spec": "upload:<id>"}}``.

* **Receiving**: :func:`begin` checks the file's name and the key's quota, then :meth:`Incoming.write`
  takes the file as it streams in: into a temporary key of the store, hashed and counted, so a file
  past ``max_upload_bytes`` or past what the key's byte quota leaves stops at that chunk
  (:class:`UploadTooLarge`, :class:`UploadQuotaExceeded`) and nothing of it is kept. :func:`finish`
  checks the first and last bytes against the format its extension names, records it within the key's
  quota (the count and the insert in one transaction that holds the key's place, so concurrent uploads
  cannot both take its last one), then moves the file to ``uploads/<owner>/<sha256>.<format>``. The id
  is the sha256: the same file uploaded twice by one key is one upload.
* **Reading, deleting**: :func:`list_uploads`, :func:`get_upload`, :func:`delete_upload` (refused while a
  queued or running job reads the file). Another key's upload is :class:`UploadNotFound`.
* **A job**: at submission :func:`check_reference` (the upload exists and is the caller's). On the
  worker :func:`for_engine` hands the engine ``embeddings:<local path>``: the store's own file when the
  store is a directory, else a copy in ``$DATA_DIR/cache/uploads`` named by its sha256 and checked
  against it; :func:`as_submitted` puts the submitted spec back into the report. The data roots do not
  apply to that path (:func:`service.core.paths.path_problem` skips upload specs): it is the server's
  own file, not one the caller named.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from pathlib import Path, PurePosixPath

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from redundancy.config import AnalysisConfig
from redundancy.errors import DatasetFormatError, DatasetNotFoundError
from redundancy.hashing import hash_file
from redundancy.report import Report
from service.core.config import Settings
from service.core.db import hold_owner, session_scope
from service.core.errors import (
    InvalidUpload,
    UploadInUse,
    UploadNotFound,
    UploadQuotaExceeded,
    UploadTooLarge,
)
from service.core.models import DatasetUpload, Job, utcnow
from service.core.queries import decode_page_token, encode_page_token
from service.core.status import JobStatus
from service.core.store import ShardStore

log = logging.getLogger("service.core.uploads")

UPLOAD_SCHEME = "upload"  # a job's `dataset.spec`: upload:<id>
ENGINE_SCHEME = "embeddings"  # what the engine reads: embeddings:<path>
FILE_FIELD = "file"  # the multipart form field of POST /v1/datasets
SPEC_FIELD = "dataset.spec"
FORMATS: dict[str, str] = {".npz": "npz", ".parquet": "parquet", ".safetensors": "safetensors"}
MAX_FILENAME_CHARS = 255
ID_PATTERN = re.compile(r"[0-9a-f]{64}")
HEAD_BYTES = 16  # kept from the start of the file for the format check
TAIL_BYTES = 8  # and from its end (parquet's footer magic)
INCOMING_PREFIX = ".incoming-"
ANONYMOUS = "anonymous"  # the owner directory of a server without API keys


def upload_id(spec: str) -> str | None:
    """The id an ``upload:<id>`` spec names (as written), or None when the spec is no upload."""
    scheme, sep, arg = spec.partition(":")
    if not sep or scheme.strip().lower() != UPLOAD_SCHEME:
        return None
    return arg


def spec_of(uid: str) -> str:
    return f"{UPLOAD_SCHEME}:{uid}"


def owner_dir(owner: str) -> str:
    return owner or ANONYMOUS


def clean_filename(raw: str | None) -> tuple[str, str]:
    """(the file's base name, its format) from a multipart ``filename``; :class:`InvalidUpload` when it
    has none, holds control characters, is too long or names no format the engine reads."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name:
        raise InvalidUpload(FILE_FIELD, "the `file` part needs a filename (its extension names the format)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidUpload(FILE_FIELD, "the filename contains control characters")
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidUpload(FILE_FIELD, f"the filename is longer than {MAX_FILENAME_CHARS} characters")
    fmt = FORMATS.get(PurePosixPath(name).suffix.lower())
    if fmt is None:
        raise InvalidUpload(FILE_FIELD, f"{name!r} is not a {', '.join(FORMATS)} file (the extension names "
                            "the format)", code="unsupported_format")
    return name, fmt


def format_problem(fmt: str, size: int, head: bytes, tail: bytes) -> str | None:
    """Why a file of ``size`` bytes starting with ``head`` and ending with ``tail`` is not a ``fmt`` file
    (a sentence), or None when its magic bytes fit. The full read is the engine's, on the worker."""
    if size == 0:
        return "the file is empty"
    if fmt == "npz" and not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "not a .npz archive: it does not start like a zip file"
    if fmt == "parquet" and not (head.startswith(b"PAR1") and tail.endswith(b"PAR1") and size >= 12):
        return "not a .parquet file: it does not start and end with PAR1"
    if fmt == "safetensors":
        n = int.from_bytes(head[:8], "little") if size >= 8 else 0
        if not (size > 8 and 0 < n <= size - 8 and head[8:9] == b"{"):
            return "not a .safetensors file: it does not start with a header length and a JSON header"
    return None


# ---------------------------------------------------------------------------------------------
# receiving a file


class Incoming:
    """A file as it streams in: written to a temporary key of the store, hashed and counted. Past
    ``cap`` bytes (the server's per-file limit) or ``room`` (what the key's byte quota leaves) it is
    discarded at once and :class:`UploadTooLarge` / :class:`UploadQuotaExceeded` raised."""

    def __init__(self, store: ShardStore, owner: str, filename: str, fmt: str, *, cap: int, room: int,
                 quota_bytes: int) -> None:
        self.store, self.owner, self.filename, self.format = store, owner, filename, fmt
        self.cap, self.room, self.quota_bytes = cap, room, quota_bytes
        self.size = 0
        self.head = b""
        self.tail = b""
        self._hash = hashlib.sha256()
        self.temp_key = store.upload_key(owner_dir(owner), f"{INCOMING_PREFIX}{uuid.uuid4().hex}")
        store.fs.makedirs(self.temp_key.rsplit("/", 1)[0], exist_ok=True)
        self._fh = store.fs.open(self.temp_key, "wb")
        self.closed = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.cap:
            self.discard()
            raise UploadTooLarge(self.cap)
        if self.size > self.room:
            self.discard()
            raise UploadQuotaExceeded("bytes", self.quota_bytes)
        self._hash.update(data)
        self._fh.write(data)
        if len(self.head) < HEAD_BYTES:
            self.head = (self.head + data)[:HEAD_BYTES]
        self.tail = (self.tail + data)[-TAIL_BYTES:]

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._fh.close()

    def discard(self) -> None:
        """Drop the temporary file (a refused, failed or duplicate upload)."""
        try:
            self._close()
        except Exception:  # noqa: BLE001 - closing a half-written remote file may fail; remove it anyway
            log.warning("could not close the incoming upload %s", self.temp_key, exc_info=True)
        try:
            if self.store.fs.exists(self.temp_key):
                self.store.fs.rm(self.temp_key)
        except Exception:  # noqa: BLE001 - a leftover temporary file is harmless; never mask the real error
            log.warning("could not remove the incoming upload %s", self.temp_key, exc_info=True)


def usage(session: Session, owner: str) -> tuple[int, int]:
    """(files, bytes) of uploads ``owner`` holds."""
    files, size = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(DatasetUpload.size_bytes), 0))
        .where(DatasetUpload.owner == owner)
    ).one()
    return int(files), int(size)


def begin(session: Session, settings: Settings, store: ShardStore, owner: str, filename: str | None) -> Incoming:
    """Check the name and the key's quota, and open the temporary file the upload streams into."""
    name, fmt = clean_filename(filename)
    files, used = usage(session, owner)
    if files >= settings.upload_quota_files:
        raise UploadQuotaExceeded("files", settings.upload_quota_files)
    if used >= settings.upload_quota_bytes:
        raise UploadQuotaExceeded("bytes", settings.upload_quota_bytes)
    return Incoming(store, owner, name, fmt, cap=settings.max_upload_bytes, room=settings.upload_quota_bytes - used,
                    quota_bytes=settings.upload_quota_bytes)


def finish(session: Session, settings: Settings, incoming: Incoming) -> tuple[DatasetUpload, bool]:
    """Check the file's format, record it within the key's quota (:func:`_record_within_quota`: the check
    and the row in one transaction) and move it to its key by sha256. Returns (upload, created): created
    is False when the key already had this file (the new copy is dropped)."""
    try:
        incoming._close()
        problem = format_problem(incoming.format, incoming.size, incoming.head, incoming.tail)
        if problem is not None:
            raise InvalidUpload(FILE_FIELD, f"{incoming.filename!r}: {problem}", code="invalid_format")
        uid = incoming.sha256()
        existing = session.get(DatasetUpload, (incoming.owner, uid))
        if existing is not None and incoming.store.fs.exists(existing.store_key):
            incoming.discard()
            return existing, False
        if existing is not None:  # its file had gone from the store: this upload puts it back
            incoming.store.fs.mv(incoming.temp_key, existing.store_key)
            return existing, False
        key = incoming.store.upload_key(owner_dir(incoming.owner), f"{uid}.{incoming.format}")
        row = DatasetUpload(owner=incoming.owner, id=uid, filename=incoming.filename, format=incoming.format,
                            size_bytes=incoming.size, store_key=key, created_at=utcnow())
        if not _record_within_quota(session, settings, row):  # the same file, by the same key, a moment earlier
            incoming.discard()
            return get_upload(session, incoming.owner, uid), False
    except BaseException:
        incoming.discard()
        raise
    try:
        incoming.store.fs.mv(incoming.temp_key, key)
    except BaseException:  # the row must not outlive a file that never arrived
        incoming.discard()
        session.execute(sa.delete(DatasetUpload).where(DatasetUpload.owner == row.owner, DatasetUpload.id == uid))
        session.commit()
        raise
    return row, True


QUOTA_LOCK = 19  # Postgres: the first key of the per-owner advisory lock (issue 19, uploads)


def _record_within_quota(session: Session, settings: Settings, row: DatasetUpload) -> bool:
    """Insert ``row`` and commit, unless the key's uploads would then pass ``upload_quota_files`` or
    ``upload_quota_bytes`` (:class:`UploadQuotaExceeded`, nothing written); False when the key already has
    this file. The count and the insert are one transaction that holds the key's place: two uploads by one
    key at quota - 1 cannot both pass. Postgres: a transaction-scoped advisory lock per owner, taken
    before the insert; SQLite: the insert, first, takes the database's write lock, so the count after it
    sees every committed upload and no other can commit before this transaction ends."""
    hold_owner(session, QUOTA_LOCK, row.owner)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same file, by the same key, finished a moment earlier: that one stands
        session.rollback()
        return False
    files, used = usage(session, row.owner)  # this upload included
    if files > settings.upload_quota_files or used > settings.upload_quota_bytes:
        session.rollback()
        over = files > settings.upload_quota_files
        raise UploadQuotaExceeded("files" if over else "bytes",
                                  settings.upload_quota_files if over else settings.upload_quota_bytes)
    session.commit()
    return True


# ---------------------------------------------------------------------------------------------
# reading and deleting


def get_upload(session: Session, owner: str, uid: str) -> DatasetUpload:
    """The upload, if it exists and is ``owner``'s; else :class:`UploadNotFound`."""
    row = session.get(DatasetUpload, (owner, uid)) if ID_PATTERN.fullmatch(uid) else None
    if row is None:
        raise UploadNotFound(uid)
    return row


def list_uploads(session: Session, owner: str, *, page_size: int,
                 page_token: str | None) -> tuple[list[DatasetUpload], str | None]:
    """Newest first, keyset-paginated like the jobs; returns the page and the next page's token."""
    q = sa.select(DatasetUpload).where(DatasetUpload.owner == owner)
    if page_token:
        t, i = decode_page_token(page_token)
        if session.get_bind().dialect.name == "sqlite":
            t = t.replace(tzinfo=None)
        q = q.where(sa.or_(DatasetUpload.created_at < t, sa.and_(DatasetUpload.created_at == t, DatasetUpload.id < i)))
    q = q.order_by(DatasetUpload.created_at.desc(), DatasetUpload.id.desc()).limit(page_size + 1)
    rows = list(session.scalars(q))
    token = None
    if len(rows) > page_size:
        rows = rows[:page_size]
        token = encode_page_token(rows[-1].created_at, rows[-1].id)
    return rows, token


def jobs_reading(session: Session, owner: str, uid: str) -> list[str]:
    """Ids of ``owner``'s queued or running jobs whose dataset is this upload."""
    return list(session.scalars(sa.select(Job.id).where(
        Job.owner == owner, Job.dataset_spec == spec_of(uid), Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
    ).order_by(Job.created_at)))


def delete_upload(session: Session, store: ShardStore, owner: str, uid: str) -> None:
    """Forget the upload and remove its file; :class:`UploadInUse` while a queued or running job reads it."""
    row = get_upload(session, owner, uid)
    busy = jobs_reading(session, owner, uid)
    if busy:
        raise UploadInUse(uid, busy)
    key = row.store_key
    session.delete(row)
    session.commit()
    try:
        if store.fs.exists(key):
            store.fs.rm(key)
    except Exception:  # noqa: BLE001 - the row is gone; a file left behind is logged, not an error to the caller
        log.error("upload %s: could not remove its file %s", uid, key, exc_info=True)


# ---------------------------------------------------------------------------------------------
# a job that reads an upload


def check_reference(session: Session, owner: str, spec: str) -> None:
    """At submission: an ``upload:<id>`` spec must name an upload of the caller's, written as
    ``upload:`` and the 64-hex id (so the jobs reading an upload are found by their spec)."""
    uid = upload_id(spec)
    if uid is None:
        return
    if spec != spec_of(uid) or not ID_PATTERN.fullmatch(uid):
        raise InvalidUpload(SPEC_FIELD, "expected upload:<id>, the 64 lowercase hex digits POST /v1/datasets "
                            "answered as `id`", code="unknown_upload")
    if session.get(DatasetUpload, (owner, uid)) is None:
        raise InvalidUpload(SPEC_FIELD, f"no uploaded dataset {uid} for this API key; upload the file first "
                            "(POST /v1/datasets) and use the id it answers", code="upload_not_found")


def for_engine(settings: Settings, job_id: str, config: AnalysisConfig) -> AnalysisConfig:
    """``config`` as the engine reads it: an ``upload:<id>`` dataset becomes ``embeddings:<local path>``
    (the column fields unchanged); any other config is returned as it is. The engine's own errors
    (:class:`DatasetNotFoundError`, :class:`DatasetFormatError`) say when the upload is gone."""
    uid = upload_id(config.dataset.spec)
    if uid is None:
        return config
    with session_scope(settings.db_url) as s:
        owner = s.scalar(sa.select(Job.owner).where(Job.id == job_id))
        row = s.get(DatasetUpload, (owner or "", uid))
        if row is not None:
            s.expunge(row)
    if row is None:
        raise DatasetNotFoundError(f"the uploaded dataset {uid} no longer exists (deleted after this job was "
                                   "submitted); upload the file again and submit a new job")
    path = local_file(settings, row)
    dataset = config.dataset.model_copy(update={"spec": f"{ENGINE_SCHEME}:{path}"})
    return config.model_copy(update={"dataset": dataset})


def as_submitted(report: Report, submitted: AnalysisConfig) -> Report:
    """The report with the dataset spec the caller submitted (``upload:<id>``), not the worker's path."""
    if report.dataset.spec != submitted.dataset.spec and upload_id(submitted.dataset.spec) is not None:
        report.config = submitted
        report.dataset.spec = submitted.dataset.spec
    return report


def local_file(settings: Settings, row: DatasetUpload) -> Path:
    """A file on this machine with the upload's content: the store's own file when the store is a
    directory, else a copy fetched into ``settings.uploads_cache_dir`` (named by sha256, checked
    against it, written under a temporary name and renamed, so a reader never sees half a copy)."""
    store = ShardStore(settings.shard_store_url)
    if store.is_local:
        path = Path(row.store_key)
        if not path.is_file():
            raise DatasetNotFoundError(f"the uploaded dataset {row.id} is missing from the artifact store")
        return path
    cached = settings.uploads_cache_dir / f"{row.id}.{row.format}"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    temp = cached.with_name(f".{cached.name}.{uuid.uuid4().hex}")
    try:
        try:
            store.fs.get_file(row.store_key, str(temp))
        except FileNotFoundError as exc:
            raise DatasetNotFoundError(f"the uploaded dataset {row.id} is missing from the artifact store") from exc
        if hash_file(temp) != row.id:
            raise DatasetFormatError(f"the copy of uploaded dataset {row.id} fetched from the artifact store does "
                                     "not match its sha256; submit the job again")
        os.replace(temp, cached)
    finally:
        temp.unlink(missing_ok=True)
    return cached
