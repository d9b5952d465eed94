"""The artifact store on the local filesystem (a directory, or a `file://` fsspec URL): a shard is
visible only once complete, comes back byte for byte, and a job's artifacts go with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.store import ShardStore


@pytest.mark.parametrize("as_url", [False, True])
def test_shard_round_trip(tmp_path: Path, as_url: bool) -> None:
    root = tmp_path / "store"
    store = ShardStore(f"file://{root}" if as_url else str(root))
    local = tmp_path / "shard"
    local.mkdir()
    (local / "stats.npz").write_bytes(b"\x00stats")
    (local / "x_val.npy").write_bytes(b"features" * 100)
    assert not store.has_shard("job", (0, 100))
    store.put_shard("job", (0, 100), local)
    assert store.has_shard("job", (0, 100)) and not store.has_shard("job", (100, 200))
    back = store.get_shard("job", (0, 100), tmp_path / "back")
    assert sorted(p.name for p in back.iterdir()) == ["stats.npz", "x_val.npy"]
    assert (back / "x_val.npy").read_bytes() == b"features" * 100
    store.drop_job("job")
    assert not store.has_shard("job", (0, 100))
    store.drop_job("job")  # dropping twice is fine


def test_a_shard_without_its_marker_is_incomplete(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path))
    (tmp_path / "jobs" / "j" / "shards" / "0-10").mkdir(parents=True)
    (tmp_path / "jobs" / "j" / "shards" / "0-10" / "stats.npz").write_bytes(b"half")
    assert not store.has_shard("j", (0, 10))


def test_one_store_url_and_its_deprecated_alias(tmp_path: Path) -> None:
    """Issue 23: ADVISOR_STORE_URL wins over ADVISOR_ARTIFACT_DIR; a remote URL makes every local file a
    cache (the feature cache mirrors <store>/features); a directory store keeps the old layout."""
    from service.core.config import Settings

    base = {"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    default = Settings(**base)
    assert default.store_root == str(tmp_path.resolve() / "artifacts") and not default.store_is_remote
    assert default.remote_feature_cache is None and default.artifact_path == tmp_path.resolve() / "artifacts"
    alias = Settings(**base, artifact_dir="s3://old/prefix")
    assert alias.store_root == "s3://old/prefix" and alias.remote_feature_cache == "s3://old/prefix/features"
    both = Settings(**base, artifact_dir="s3://old/prefix", store_url="s3://new/p/")
    assert both.store_root == "s3://new/p/" and both.shard_store_url == "s3://new/p/"
    assert both.remote_feature_cache == "s3://new/p/features"
    assert both.artifact_path == tmp_path.resolve() / "artifacts"  # local staging only
    local = Settings(**base, store_url=f"file://{tmp_path / 'shared'}")
    assert not local.store_is_remote and local.artifact_path == (tmp_path / "shared").resolve()


def test_dropping_shards_keeps_the_jobs_other_files(tmp_path: Path) -> None:
    store = ShardStore(str(tmp_path / "store"))
    shard = tmp_path / "shard"
    shard.mkdir()
    (shard / "stats.npz").write_bytes(b"s")
    store.put_shard("job", (0, 10), shard)
    store.drop_shards("job")
    assert not (tmp_path / "store" / "jobs" / "job").exists()  # nothing else there: no empty directory
    store.put_shard("job", (0, 10), shard)
    store.fs.pipe_file(store.stats_key("job", "stats-1.npz"), b"x")
    store.drop_shards("job")
    assert sorted(p.name for p in (tmp_path / "store" / "jobs" / "job").iterdir()) == ["stats-1.npz"]
