"""Where the engine runs: caches, data root, device. None of it changes a result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from redundancy.errors import DeviceUnavailableError


def _default_home() -> Path:
    return Path(os.environ.get("ADVISOR_HOME", Path.home() / ".cache" / "redundancy-advisor"))


@dataclass
class Runtime:
    cache_dir: Path | None = field(default_factory=lambda: _default_home() / "features")
    data_root: Path = field(default_factory=lambda: _default_home() / "datasets")
    # Scratch space for memory-mapped features when there is no cache (files unlinked once opened).
    work_dir: Path = field(default_factory=lambda: _default_home() / "work")
    allow_download: bool = False
    # A feature cache shared by several machines (any fsspec URL: s3://bucket/prefix/features); the
    # local `cache_dir` is then a copy of it, safe to delete.
    remote_cache: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int | None = None  # data-loading processes; None: 0 on CPU, up to 8 on CUDA
    # The float64 train statistics of a job's layers, (Σ d)²·8 bytes, must fit here (the layer sweep).
    max_layer_stats_bytes: int = field(
        default_factory=lambda: int(os.environ.get("ADVISOR_MAX_LAYER_STATS_BYTES", str(4 * 2**30))))
    # Directories every file a dataset opens must resolve into (every symlink followed); empty: anywhere
    # (the engine's CLI). The service sets its ADVISOR_DATA_ROOTS here.
    confine_to: tuple[Path, ...] = ()

    def resolve_device(self) -> str:
        import torch  # lazy: Runtime is part of the light `import redundancy`; torch only to resolve "auto"

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {self.device!r} was asked for, but this process has no CUDA "
                                         "device (a worker on the gpu queue needs one, or ADVISOR_DEVICE=cpu)")
        return self.device
