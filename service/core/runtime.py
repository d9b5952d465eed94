"""Settings → the engine's :class:`redundancy.Runtime` (where it caches, reads data, which device)."""

from __future__ import annotations

from redundancy import Runtime
from service.core.config import Settings


def make_runtime(settings: Settings) -> Runtime:
    settings.ensure_dirs()
    return Runtime(
        cache_dir=settings.cache_dir,
        data_root=settings.datasets_dir,
        allow_download=settings.allow_download,
        device=settings.device,
        confine_to=settings.allowed_roots,  # every file a dataset opens, symlinks followed
    )
