"""One file mode for every file the engine exports (artifacts, their cards, reports, plots).

Files were written with whatever their writer chose: safetensors' own writer gives 0600, Python's
`write_text` 0666 less the umask (0644 usually), so an exported artifact and its card differed. Every
exported file now gets :func:`export_mode`: 0644, or the octal `ADVISOR_EXPORT_MODE` (e.g. 600 for
private exports).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_EXPORT_MODE = 0o644
MODE_ENV = "ADVISOR_EXPORT_MODE"


def export_mode() -> int:
    """The mode of exported files: `ADVISOR_EXPORT_MODE` (octal, e.g. 640) or 0644."""
    raw = os.environ.get(MODE_ENV, "").strip()
    if not raw:
        return DEFAULT_EXPORT_MODE
    try:
        mode = int(raw, 8)
    except ValueError:
        raise ValueError(f"{MODE_ENV}={raw!r} is not an octal file mode such as 644") from None
    if not 0 <= mode <= 0o777:
        raise ValueError(f"{MODE_ENV}={raw!r} is outside 000..777")
    return mode


def set_export_mode(path: str | Path) -> Path:
    """Give an exported file the export mode; returns its path."""
    os.chmod(path, export_mode())
    return Path(path)
