"""Settings → the engine's :class:`redundancy.Runtime` (where it caches, reads data, which device)."""

from __future__ import annotations

import logging

from redundancy import Runtime
from service.core.config import Settings
from service.core.housekeeping import evict_local_features

log = logging.getLogger("service.core.runtime")


def make_runtime(settings: Settings) -> Runtime:
    settings.ensure_dirs()
    if settings.feature_cache_max_bytes:  # this host's copy of the feature cache, under its cap
        try:
            evict_local_features(settings)
        except OSError:
            log.warning("could not trim the local feature cache", exc_info=True)
    return Runtime(
        cache_dir=settings.cache_dir,
        data_root=settings.datasets_dir,
        allow_download=settings.allow_download,
        device=settings.device,
        remote_cache=settings.remote_feature_cache,
        max_layer_stats_bytes=settings.max_layer_stats_bytes,
        confine_to=settings.allowed_roots,  # every file a dataset opens, symlinks followed
    )
