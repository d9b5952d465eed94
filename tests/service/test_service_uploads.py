"""Uploaded datasets (issue 19): POST/GET/DELETE /v1/datasets, and a job on `upload:<id>`.

The files are real: a .npz of float32 vectors. Until the engine reads `embeddings:<path>`, a job is
checked up to what the engine receives (the fake engine records its config); where the engine has that
reader, :func:`test_an_uploaded_npz_runs_through_the_real_engine` runs it on the upload end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from redundancy import config as engine_config
from redundancy.config import AnalysisConfig
from redundancy.errors import RedundancyError
from service.api.multipart import receive_file
from service.core import uploads
from service.core.config import Settings
from service.core.db import session_scope
from service.core.errors import UploadTooLarge
from service.core.models import DatasetUpload
from service.core.store import ShardStore
from service.main import create_app
from tests.service.conftest import FakeEngine, Harness, fake_report, small_job
from tests.service.upload_race import Rendezvous, hook_usage, race

D_EMB = 16


def npz_bytes(seed: int = 0, n_train: int = 60, n_test: int = 30, d: int = D_EMB) -> bytes:
    """A real embeddings .npz: float32 vectors with class structure, integer labels, class names."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d)).astype(np.float32) * 3
    y_train, y_test = np.arange(n_train) % 3, np.arange(n_test) % 3
    buf = io.BytesIO()
    np.savez(buf, x_train=(centres[y_train] + rng.normal(size=(n_train, d))).astype(np.float32), y_train=y_train,
             x_test=(centres[y_test] + rng.normal(size=(n_test, d))).astype(np.float32), y_test=y_test,
             classes=np.array(["a", "b", "c"]))
    return buf.getvalue()


class RecordingEngine(FakeEngine):
    """The fake engine, keeping each config it was handed and the bytes of the file its spec names."""

    def __init__(self) -> None:
        super().__init__()
        self.configs: list[AnalysisConfig] = []
        self.files: list[bytes] = []

        def report(config: AnalysisConfig) -> Any:
            self.configs.append(config)
            scheme, _, path = config.dataset.spec.partition(":")
            if scheme == "embeddings":
                self.files.append(Path(path).read_bytes())
            return fake_report(config)

        self.report_fn = report


@pytest.fixture
def make_harness(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """`make_harness(**settings)`: a harness (app, in-process worker, recording engine) on those settings."""
    clients: list[TestClient] = []

    def make(**over: Any) -> Harness:
        settings = settings_factory(tmp_path / uuid.uuid4().hex[:8], rate_limit="", **over)
        h = Harness(settings, None, RecordingEngine())  # type: ignore[arg-type]
        client = TestClient(create_app(settings, queue=h, maintenance=False))
        client.__enter__()
        clients.append(client)
        h.client = client
        return h

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def upload(client: TestClient, data: bytes, name: str = "vectors.npz", **headers: str) -> Any:
    return client.post("/v1/datasets", files={"file": (name, data, "application/octet-stream")}, headers=headers)


def upload_job(uid: str) -> dict[str, Any]:
    """A small job on the upload. Where the engine knows precomputed vectors (issue 19's reader), the
    model is theirs (`precomputed`, the default for an upload); before, any model the server accepts."""
    body = small_job()
    body["dataset"]["spec"] = f"upload:{uid}"
    precomputed = getattr(engine_config, "PRECOMPUTED", None)
    if precomputed is not None:
        body["model"] = {"name": precomputed}
        body.pop("image_size", None)
    return body


def store_files(settings: Settings) -> list[str]:
    """Every file under the store's uploads/ (temporary ones included)."""
    store = ShardStore(settings.shard_store_url)
    root = store.upload_key("", "").rstrip("/")
    return sorted(store.fs.find(root)) if store.fs.exists(root) else []


def assert_problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if field is not None:
        assert [e["field"] for e in body["errors"]] == [field], body
    return body


# ---------------------------------------------------------------------------------------------
# upload → list → get → a job


def test_upload_list_get_and_a_job_reads_the_uploaded_file(make_harness, tmp_path):
    # The data roots do not cover the store: an upload is the server's own file, not a caller's path.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    h = make_harness(data_roots=str(elsewhere))
    data = npz_bytes()
    r = upload(h.client, data)
    assert r.status_code == 201, r.text
    up = r.json()
    sha = hashlib.sha256(data).hexdigest()
    assert up["id"] == up["sha256"] == sha and up["spec"] == f"upload:{sha}"
    assert (up["size_bytes"], up["filename"], up["format"]) == (len(data), "vectors.npz", "npz")
    assert r.headers["location"] == f"/v1/datasets/{sha}"
    assert h.client.get(f"/v1/datasets/{sha}").json() == up
    assert h.client.get("/v1/datasets").json() == {"items": [up], "next_page_token": None}
    again = upload(h.client, data, name="renamed.npz")  # the same bytes: the same upload
    assert again.status_code == 200 and again.json() == up
    files = store_files(h.settings)
    assert [Path(f).name for f in files] == [f"{sha}.npz"]
    assert Path(files[0]).read_bytes() == data

    job = h.submit(upload_job(sha))
    assert job["request"]["dataset"]["spec"] == f"upload:{sha}"
    assert h.run_all() == ["succeeded"]
    (config,) = h.engine.configs
    scheme, _, path = config.dataset.spec.partition(":")
    assert scheme == "embeddings" and Path(path) == Path(files[0])  # the store is a directory: its own file
    assert h.engine.files == [data]
    assert config.dataset.max_train == 300 and config.model.name == job["request"]["model"]["name"]  # as submitted
    report = h.client.get(f"/v1/jobs/{job['id']}/result").json()
    assert report["dataset"]["spec"] == report["config"]["dataset"]["spec"] == f"upload:{sha}"  # no server path


def test_a_remote_store_is_fetched_into_a_content_hashed_cache(make_harness):
    """Production across machines: the API writes the store (here fsspec's in-memory one), the worker
    reads a local copy named by the sha256, fetched once."""
    h = make_harness(artifact_dir=f"memory://advisor-uploads-{uuid.uuid4().hex}")
    data = npz_bytes(seed=1)
    sha = upload(h.client, data).json()["id"]
    store = ShardStore(h.settings.shard_store_url)
    assert not store.is_local and store.fs.cat_file(store.upload_key("anonymous", f"{sha}.npz")) == data
    for _ in range(2):
        h.submit(upload_job(sha) | {"seed": len(h.engine.configs)})
        assert h.run_all() == ["succeeded"]
    cached = h.settings.uploads_cache_dir / f"{sha}.npz"
    assert [c.dataset.spec for c in h.engine.configs] == [f"embeddings:{cached}"] * 2
    assert h.engine.files == [data, data] and cached.read_bytes() == data
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name]  # no temporary copy left
    assert h.client.delete(f"/v1/datasets/{sha}").status_code == 204
    assert store_files(h.settings) == []


def test_a_cached_copy_that_does_not_match_its_sha256_is_refused(make_harness):
    h = make_harness(artifact_dir=f"memory://advisor-uploads-{uuid.uuid4().hex}")
    sha = upload(h.client, npz_bytes(seed=2)).json()["id"]
    store = ShardStore(h.settings.shard_store_url)
    store.fs.pipe_file(store.upload_key("anonymous", f"{sha}.npz"), b"PK\x03\x04 tampered")
    job = h.submit(upload_job(sha))
    assert h.run_all() == ["failed"]
    err = h.client.get(f"/v1/jobs/{job['id']}").json()["error"]
    assert err["field"] == "dataset.spec" and "sha256" in err["message"]
    assert not h.settings.uploads_cache_dir.exists() or not any(h.settings.uploads_cache_dir.iterdir())


def test_an_upload_gone_before_the_job_runs_fails_the_job_with_the_reason(make_harness):
    h = make_harness()
    sha = upload(h.client, npz_bytes()).json()["id"]
    job = h.submit(upload_job(sha))
    with session_scope(h.settings.db_url) as s:  # as if deleted behind the API's back
        s.delete(s.get(DatasetUpload, ("", sha)))
    assert h.run_all() == ["failed"]
    err = h.client.get(f"/v1/jobs/{job['id']}").json()["error"]
    assert (err["code"], err["field"]) == ("dataset_not_found", "dataset.spec") and sha in err["message"]
    assert h.engine.configs == []


def test_pages_of_uploads_newest_first(make_harness):
    h = make_harness()
    ids = [upload(h.client, npz_bytes(seed=i)).json()["id"] for i in range(3)]
    first = h.client.get("/v1/datasets", params={"page_size": 2}).json()
    second = h.client.get("/v1/datasets", params={"page_size": 2, "page_token": first["next_page_token"]}).json()
    assert [d["id"] for d in first["items"] + second["items"]] == ids[::-1]
    assert second["next_page_token"] is None
    assert_problem(h.client.get("/v1/datasets", params={"page_token": "nonsense"}), 400, "page_token")


# ---------------------------------------------------------------------------------------------
# limits: size cap (413), quota (429)


def test_a_file_past_the_size_cap_is_413_and_nothing_is_kept(make_harness):
    h = make_harness(max_upload_bytes=4096)
    body = assert_problem(upload(h.client, npz_bytes()), 413, "file")  # ~4.6 kB of vectors
    assert "4096 bytes" in body["detail"] and body["limit"] == 4096
    assert store_files(h.settings) == [] and h.client.get("/v1/datasets").json()["items"] == []
    small = npz_bytes(n_train=9, n_test=6, d=4)
    assert len(small) <= 4096 and upload(h.client, small).status_code == 201
    # A Content-Length far past the cap is refused before any of the body is read.
    r = h.client.post("/v1/datasets", content=b"x" * (4096 + 70_000),
                      headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert_problem(r, 413, "body")


class FakeRequest:
    """Just what `receive_file` reads of a request: its headers and its body, chunk by chunk."""

    def __init__(self, chunks: list[bytes], boundary: str = "b0undary") -> None:
        self.headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
        self.chunks, self.consumed = chunks, 0

    async def stream(self) -> Any:
        for c in self.chunks:
            self.consumed += 1
            yield c


def multipart_chunks(filename: str, payload: list[bytes], boundary: str = "b0undary") -> list[bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return [head, *payload, f"\r\n--{boundary}--\r\n".encode()]


def test_the_size_cap_stops_the_stream_at_the_chunk_that_passes_it(settings_factory, tmp_path):
    """Enforced while the file streams in: the body is not read past the chunk that crosses the cap, and
    the partial file is removed from the store."""
    settings = settings_factory(tmp_path, max_upload_bytes=4096)
    store = ShardStore(settings.shard_store_url)
    request = FakeRequest(multipart_chunks("big.npz", [b"PK\x03\x04" + b"\0" * 1020] + [b"\0" * 1024] * 99))

    async def open_sink(filename: str | None) -> uploads.Incoming:
        with session_scope(settings.db_url) as s:
            return uploads.begin(s, settings, store, "", filename)

    with pytest.raises(UploadTooLarge):
        asyncio.run(receive_file(request, "file", open_sink))  # type: ignore[arg-type]
    assert request.consumed == 1 + 5  # the part's headers, then four chunks within the cap and the fifth past it
    assert store_files(settings) == []


def test_the_quota_in_files_and_in_bytes_is_429_and_nothing_is_kept(make_harness):
    h = make_harness(upload_quota_files=2, upload_quota_bytes=18_000)
    a, b, c = npz_bytes(seed=0), npz_bytes(seed=1), npz_bytes(seed=2)  # 7,740 bytes each
    assert upload(h.client, a).status_code == 201 and upload(h.client, b).status_code == 201
    r = upload(h.client, c)
    body = assert_problem(r, 429)
    assert body["quota"] == "files" and body["limit"] == 2 and "Retry-After" not in r.headers
    assert h.client.delete(f"/v1/datasets/{hashlib.sha256(b).hexdigest()}").status_code == 204
    big = npz_bytes(seed=3, n_train=120)  # 12,060 bytes: 7,740 + 12,060 > 18,000
    body = assert_problem(upload(h.client, big), 429)
    assert body["quota"] == "bytes" and body["limit"] == 18_000
    assert [Path(f).name for f in store_files(h.settings)] == [f"{hashlib.sha256(a).hexdigest()}.npz"]
    assert upload(h.client, c).status_code == 201  # room again for one that fits


@pytest.mark.parametrize("quota", ["files", "bytes"])
def test_two_uploads_racing_for_the_last_place_of_the_quota_one_wins(make_harness, monkeypatch, quota):
    """At quota - 1 (files), or with room for one more file but not two (bytes), two uploads of one key at
    once: both pass the check before they stream; exactly one is kept, the other is the quota's 429."""
    first, a, b = npz_bytes(seed=0), npz_bytes(seed=1), npz_bytes(seed=2)  # 7,740 bytes each
    limits = {"upload_quota_files": 2} if quota == "files" else {"upload_quota_bytes": 3 * len(first) - 100}
    h = make_harness(**limits)
    assert upload(h.client, first).status_code == 201
    rendezvous = Rendezvous()
    hook_usage(monkeypatch, rendezvous)
    answers = race(lambda: upload(h.client, a, name="a.npz"), lambda: upload(h.client, b, name="b.npz"))
    assert sorted(r.status_code for r in answers) == [201, 429], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 429)
    assert assert_problem(refused, 429)["quota"] == quota
    kept = next(r for r in answers if r.status_code == 201).json()["id"]
    listed = {d["id"] for d in h.client.get("/v1/datasets").json()["items"]}
    assert listed == {hashlib.sha256(first).hexdigest(), kept}
    assert sorted(Path(f).name for f in store_files(h.settings)) == sorted(f"{i}.npz" for i in listed)


# ---------------------------------------------------------------------------------------------
# owners and deletes


def test_another_keys_upload_is_404_and_cannot_be_named_in_a_job(make_harness):
    h = make_harness(api_keys="key-a,key-b")
    a, b = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
    assert_problem(upload(h.client, npz_bytes()), 401)
    sha = upload(h.client, npz_bytes(), **a).json()["id"]
    assert_problem(h.client.get(f"/v1/datasets/{sha}", headers=b), 404)
    assert_problem(h.client.delete(f"/v1/datasets/{sha}", headers=b), 404)
    assert h.client.get("/v1/datasets", headers=b).json()["items"] == []
    body = assert_problem(h.client.post("/v1/jobs", json=upload_job(sha), headers=b), 422, "dataset.spec")
    assert body["code"] == "upload_not_found"
    assert h.client.post("/v1/jobs", json=upload_job(sha), headers=a).status_code == 202
    # Key b's own copy of the same file is its own upload (and its own file in the store).
    assert upload(h.client, npz_bytes(), **b).json()["id"] == sha
    assert len(store_files(h.settings)) == 2


def test_delete_while_a_job_reads_it_is_409_then_204_once_it_finished(make_harness):
    h = make_harness()
    sha = upload(h.client, npz_bytes()).json()["id"]
    job = h.submit(upload_job(sha))
    body = assert_problem(h.client.delete(f"/v1/datasets/{sha}"), 409)
    assert body["jobs"] == [job["id"]]
    assert h.run_all() == ["succeeded"]
    assert h.client.delete(f"/v1/datasets/{sha}").status_code == 204
    assert store_files(h.settings) == []
    assert_problem(h.client.get(f"/v1/datasets/{sha}"), 404)
    assert_problem(h.client.delete(f"/v1/datasets/{sha}"), 404)
    assert_problem(h.client.post("/v1/jobs", json=upload_job(sha)), 422, "dataset.spec")


# ---------------------------------------------------------------------------------------------
# bad input: a problem naming the field, never a 500


def raw(boundary: str, *parts: str, end: bool = True) -> bytes:
    text = "".join(f"--{boundary}\r\n{p}" for p in parts) + (f"--{boundary}--\r\n" if end else "")
    return text.encode()


FILE_PART = 'Content-Disposition: form-data; name="file"; filename="v.npz"\r\n\r\nPK\x03\x04abc\r\n'
BAD_BODIES: dict[str, tuple[str, bytes]] = {
    "no boundary": ("multipart/form-data", raw("b", FILE_PART)),
    "no file part": ("multipart/form-data; boundary=b",
                     raw("b", 'Content-Disposition: form-data; name="data"; filename="v.npz"\r\n\r\nPK\r\n')),
    "no parts at all": ("multipart/form-data; boundary=b", b"--b--\r\n"),
    "not multipart at all": ("multipart/form-data; boundary=b", b"just some bytes"),
    "a file without a filename": ("multipart/form-data; boundary=b",
                                  raw("b", 'Content-Disposition: form-data; name="file"\r\n\r\nPK\x03\x04\r\n')),
    "two file parts": ("multipart/form-data; boundary=b", raw("b", FILE_PART, FILE_PART)),
    "cut short": ("multipart/form-data; boundary=b", raw("b", FILE_PART, end=False)),
    "garbage headers": ("multipart/form-data; boundary=b", b"--b\r\n\x00\x01\x02: \r\n\r\n\r\n--b--\r\n"),
    "a control character in the filename": ("multipart/form-data; boundary=b", raw(
        "b", 'Content-Disposition: form-data; name="file"; filename="a\x01b.npz"\r\n\r\nPK\x03\x04\r\n')),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_bad_multipart_body_is_422_naming_the_file_field(make_harness, case):
    h = make_harness()
    content_type, body = BAD_BODIES[case]
    r = h.client.post("/v1/datasets", content=body, headers={"Content-Type": content_type})
    assert_problem(r, 422, "file")
    assert store_files(h.settings) == []


@pytest.mark.parametrize(("name", "data", "code", "needle"), [
    ("vectors.csv", b"a,b\n1,2\n", "unsupported_format", ".npz"),
    ("noext", b"PK\x03\x04", "unsupported_format", ".npz"),
    ("vectors.npz", b"not a zip", "invalid_format", "zip"),
    ("vectors.npz", b"", "invalid_format", "empty"),
    ("vectors.parquet", b"PAR1 but no footer", "invalid_format", "PAR1"),
    ("vectors.safetensors", b"\xff" * 8 + b"{}", "invalid_format", "header"),
    ("x" * 300 + ".npz", b"PK\x03\x04", "invalid_upload", "255"),
])
def test_a_file_that_is_not_what_its_extension_says_is_422(make_harness, name, data, code, needle):
    h = make_harness()
    body = assert_problem(upload(h.client, data, name=name), 422, "file")
    assert body["code"] == code and needle in body["errors"][0]["reason"]
    assert store_files(h.settings) == []


def test_the_magic_bytes_of_real_files_pass(tmp_path):
    """What the format check accepts: files numpy, pyarrow and safetensors wrote."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import save

    x = np.ones((4, 3), dtype=np.float32)
    pq.write_table(pa.table({"embedding": list(x), "label": [0, 1, 0, 1]}), tmp_path / "v.parquet")
    files = {"npz": npz_bytes(), "parquet": (tmp_path / "v.parquet").read_bytes(), "safetensors": save({"x": x})}
    for fmt, data in files.items():
        assert uploads.format_problem(fmt, len(data), data[:16], data[-8:]) is None, fmt
        assert uploads.format_problem(fmt, len(data), data[:16][::-1], data[-8:][::-1]) is not None, fmt


def test_other_media_types_are_415_and_other_methods_405(make_harness):
    h = make_harness()
    r = h.client.post("/v1/datasets", json={"file": "x"})
    assert_problem(r, 415, "Content-Type")
    r = h.client.put("/v1/datasets", files={"file": ("v.npz", b"PK\x03\x04", "application/octet-stream")})
    assert_problem(r, 405)


@pytest.mark.parametrize("spec", ["upload:", "upload:abc", "UPLOAD:" + "a" * 64, "upload:" + "A" * 64,
                                  "upload: " + "a" * 64, "upload:" + "a" * 64])
def test_a_job_on_a_bad_or_unknown_upload_id_is_422_naming_the_spec(make_harness, spec):
    h = make_harness()
    body = upload_job("a" * 64)
    body["dataset"]["spec"] = spec
    assert_problem(h.client.post("/v1/jobs", json=body), 422, "dataset.spec")


def test_an_unknown_upload_id_in_the_path_is_404_a_malformed_one_422(make_harness):
    h = make_harness()
    for uid, status, field in (("abc", 404, None), ("a" * 64, 404, None), ("a" * 65, 422, "upload_id"),
                               ("%00", 422, "path")):
        assert_problem(h.client.get(f"/v1/datasets/{uid}"), status, field)
        assert_problem(h.client.delete(f"/v1/datasets/{uid}"), status, field)


# ---------------------------------------------------------------------------------------------
# the real engine, once it reads `embeddings:<path>`


def _engine_reads_embeddings() -> bool:
    from redundancy.sources.datasets.registry import parse_spec

    try:
        parse_spec("embeddings:/x.npz")
    except RedundancyError:
        return False
    return True


def vector_file(fmt: str, n_train: int = 90, n_test: int = 45) -> bytes:
    """The vectors of :func:`npz_bytes` in each format the engine reads (parquet: one row per vector)."""
    arrays = dict(np.load(io.BytesIO(npz_bytes(n_train=n_train, n_test=n_test))))
    if fmt == "npz":
        return npz_bytes(n_train=n_train, n_test=n_test)
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in arrays.items() if k != "classes"})
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = np.asarray(arrays["classes"])
    table = pa.table({
        "embedding": [list(map(float, v)) for v in np.concatenate([arrays["x_train"], arrays["x_test"]])],
        "label": [str(names[i]) for i in np.concatenate([arrays["y_train"], arrays["y_test"]])],
        "split": ["train"] * n_train + ["test"] * n_test,
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.mark.skipif(not _engine_reads_embeddings(), reason="the engine does not read embeddings:<path> yet")
@pytest.mark.parametrize("fmt", ["npz", "parquet", "safetensors"])
def test_an_uploaded_file_runs_through_the_real_engine(make_harness, fmt):
    from redundancy.pipeline import run_analysis
    from workers.runner import execute_job

    h = make_harness()
    sha = upload(h.client, vector_file(fmt), name=f"vectors.{fmt}").json()["id"]
    job = h.submit(upload_job(sha) | {"bootstrap": 0, "baselines": []})
    outcome = execute_job(h.sent.pop(), h.settings, analyze=run_analysis, worker_name="test")
    assert outcome == "succeeded", h.client.get(f"/v1/jobs/{job['id']}").json()
    report = h.client.get(f"/v1/jobs/{job['id']}/result").json()
    assert report["dataset"]["spec"] == f"upload:{sha}" and report["model"]["d"] == D_EMB
    assert report["dataset"]["sizes"]["test"] == 45
    assert report["full_accuracy"] > 0.9  # three well-separated clusters
