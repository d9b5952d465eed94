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
