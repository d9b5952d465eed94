"""The shard store: where a sharded job's shards leave their statistics and feature slices for the
reduce (not to be confused with the artifact store of :mod:`service.core.artifacts`, which keeps each
job's layer statistics and heads). A directory by default, any fsspec URL otherwise (``s3://bucket/prefix``,
``gs://…``), so object storage needs only ``ADVISOR_ARTIFACT_DIR``.

Layout: ``<root>/jobs/<job id>/shards/<start>-<stop>/`` holding a shard's files and, written last,
``done``: a shard whose marker exists is complete, so a rerun of the job (a new attempt after a lost
worker) reuses it and recomputes only the shards that never finished. Uploaded datasets (issue 19,
:mod:`service.core.uploads`) are ``<root>/uploads/<owner>/<sha256>.<format>``.
"""

from __future__ import annotations

from pathlib import Path

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

DONE = "done"


class ShardStore:
    def __init__(self, root: str) -> None:
        self.fs: fsspec.AbstractFileSystem
        self.fs, self.root = url_to_fs(root)
        self.root = self.root.rstrip("/")
        # fsspec shares one instance per URL in a process, with its listings cache: what another host wrote
        # since must be seen (a shard's `done`, an upload), so each store starts from a fresh listing
        self.fs.invalidate_cache()

    def _key(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def is_local(self) -> bool:
        """Whether the store is a directory on this machine (its keys are then file paths)."""
        return isinstance(self.fs, LocalFileSystem)

    def url(self, key: str) -> str:
        """A key as a URL any host opens with fsspec (the protocol's prefix added back)."""
        return self.fs.unstrip_protocol(key)

    def stats_key(self, job_id: str, name: str) -> str:
        """A job's statistics file in a remote store (issue 23): ``<root>/jobs/<job id>/<name>``."""
        return self._key("jobs", job_id, name)

    def upload_key(self, owner_dir: str, name: str) -> str:
        return self._key("uploads", owner_dir, name)

    def shard_key(self, job_id: str, rows: tuple[int, int]) -> str:
        return self._key("jobs", job_id, "shards", f"{rows[0]}-{rows[1]}")

    def has_shard(self, job_id: str, rows: tuple[int, int]) -> bool:
        return bool(self.fs.exists(f"{self.shard_key(job_id, rows)}/{DONE}"))

    def put_shard(self, job_id: str, rows: tuple[int, int], local: Path) -> None:
        """Upload every file of the local shard directory, then the completion marker."""
        key = self.shard_key(job_id, rows)
        self.fs.makedirs(key, exist_ok=True)
        for f in sorted(local.iterdir()):
            if f.is_file():
                self.fs.put_file(str(f), f"{key}/{f.name}")
        self.fs.pipe_file(f"{key}/{DONE}", b"")

    def get_shard(self, job_id: str, rows: tuple[int, int], local: Path) -> Path:
        """Download a complete shard into the local directory `local`."""
        key = self.shard_key(job_id, rows)
        local.mkdir(parents=True, exist_ok=True)
        for path in self.fs.ls(key, detail=False):
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            if name != DONE:
                self.fs.get_file(path, str(local / name))
        return local

    def drop_shards(self, job_id: str) -> None:
        """Remove a job's shard files (after its reduce), keeping its other files (statistics)."""
        key = self._key("jobs", job_id, "shards")
        if self.fs.exists(key):
            self.fs.rm(key, recursive=True)
        job = self._key("jobs", job_id)
        if self.is_local and self.fs.exists(job) and not self.fs.ls(job, detail=False):
            self.fs.rmdir(job)  # a directory store: no empty directory left behind

    def drop_job(self, job_id: str) -> None:
        key = self._key("jobs", job_id)
        if self.fs.exists(key):
            self.fs.rm(key, recursive=True)
