"""`hf:<name or local directory>`: a Hugging Face encoder (`transformers.AutoModel` +
`AutoTokenizer`) over texts.

Pooling: `mean` (attention-masked) or `cls` when asked (`model.pooling`); otherwise what a
sentence-transformers directory says (`modules.json` with `1_Pooling/config.json`, a `Normalize`
module, `max_seq_length` and `do_lower_case` in `sentence_bert_config.json`), so the vectors equal
`SentenceTransformer(dir).encode`; a plain model gets the masked mean. `layer` `hidden.i` takes hidden
state i (0: the embeddings, N: the last layer) with the same pooling and no normalisation; none:
the pooled output the model is meant to be used with.

Offline by default: a name is looked up in the local Hugging Face cache only, unless downloads are
allowed (`ADVISOR_ALLOW_DOWNLOAD`) and `HF_HUB_OFFLINE` is not set. Texts are truncated at the
model's maximum length (the report's `input_size`), and each chunk of rows is sorted by length so
batches carry little padding."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from redundancy.errors import UnknownLayerError, UnknownModelError, WeightsUnavailableError
from redundancy.hashing import hash_file, hash_json
from redundancy.sources.datasets.rows import RowSplit
from redundancy.sources.encoders.base import FeatureSource

HF_PREFIX = "hf:"
ST_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")  # sentence-transformers' order
ST_MODULES = {"Transformer", "Pooling", "Normalize"}
CHUNK_BATCHES = 32  # rows are sorted by length within chunks of this many batches
_LAYER = re.compile(r"hidden\.(\d+)")
_MAX_SANE_LENGTH = 1_000_000  # tokenizers without a limit say 1e30


def transformers_available() -> bool:
    import importlib.util  # lazy: only the catalog asks

    return importlib.util.find_spec("transformers") is not None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hf_local_dir(name: str) -> str | None:
    """The directory that `hf:<arg>` names, when `arg` is a path (starts with `/`, `.` or `~`); None
    for a hub name such as `sentence-transformers/all-MiniLM-L6-v2`."""
    arg = name.removeprefix(HF_PREFIX).strip()
    return arg if arg.startswith(("/", ".", "~")) else None


def locate(name: str, allow_download: bool = False) -> Path:
    """The local directory of `hf:<name or directory>`. Raises UnknownModelError (a directory that is
    not there or not a model) or WeightsUnavailableError (a hub name not in the local cache), each
    naming where it looked."""
    arg = name.removeprefix(HF_PREFIX).strip()
    if not arg:
        raise UnknownModelError("an hf: model needs a name or a directory: hf:<name or local directory>")
    local = hf_local_dir(name)
    if local is not None:
        path = Path(local).expanduser()
        if not (path / "config.json").is_file():
            raise UnknownModelError(f"no Hugging Face model directory at {path} (looked for {path / 'config.json'})")
        return path
    from huggingface_hub import constants, snapshot_download  # lazy: the optional `text` extra

    local_only = offline() or not allow_download
    try:
        return Path(snapshot_download(arg, local_files_only=local_only))
    except Exception as exc:  # not cached, unknown repo, no network
        where = f"the Hugging Face cache {constants.HF_HUB_CACHE}"
        hint = ("downloads are off (allow them with ADVISOR_ALLOW_DOWNLOAD=1 and HF_HUB_OFFLINE unset), or give a "
                "local directory: hf:/path/to/model") if local_only else f"{type(exc).__name__}: {str(exc)[:200]}"
        raise WeightsUnavailableError(f"hf model {arg!r} is not present locally (looked in {where}); {hint}",
                                      field="model.name") from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UnknownModelError(f"cannot read {path}: {exc}") from exc


class SentenceTransformerLayout:
    """What a sentence-transformers directory says about pooling, normalisation and length."""

    def __init__(self, root: Path) -> None:
        self.modes: list[str] = ["mean_tokens"]
        self.normalize = False
        self.max_length: int | None = None
        self.lowercase = False
        self.present = (root / "modules.json").is_file()
        if not self.present:
            return
        modules = _read_json(root / "modules.json")
        for m in modules if isinstance(modules, list) else []:
            kind = str(m.get("type", "")).rsplit(".", 1)[-1]
            if kind not in ST_MODULES:
                raise UnknownModelError(
                    f"{root}: modules.json has a {kind} module; supported: {', '.join(sorted(ST_MODULES))}"
                )
            if kind == "Pooling":
                cfg = _read_json(root / m.get("path", "") / "config.json")
                self.modes = [mode for mode in ST_POOLING_MODES if cfg.get(f"pooling_mode_{mode}")]
                other = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v
                         and k.removeprefix("pooling_mode_") not in ST_POOLING_MODES]
                if other or not self.modes:
                    raise UnknownModelError(f"{root}: pooling {', '.join(other) or 'none'} is not supported")
            self.normalize |= kind == "Normalize"
        if (root / "sentence_bert_config.json").is_file():
            sb = _read_json(root / "sentence_bert_config.json")
            self.max_length = int(sb["max_seq_length"]) if sb.get("max_seq_length") else None
            self.lowercase = bool(sb.get("do_lower_case", False))


def pool(tokens: torch.Tensor, mask: torch.Tensor, modes: list[str]) -> torch.Tensor:
    """(B, T, h) token states → (B, h·len(modes)): sentence-transformers' pooling, padding masked out."""
    m = mask.unsqueeze(-1).to(tokens.dtype)
    out = []
    for mode in modes:
        if mode == "cls_token":
            out.append(tokens[:, 0])
        elif mode == "max_tokens":
            out.append(tokens.masked_fill(m == 0, -1e9).max(dim=1).values)
        else:
            total, count = (tokens * m).sum(dim=1), m.sum(dim=1).clamp(min=1e-9)
            out.append(total / count if mode == "mean_tokens" else total / count.sqrt())
    return torch.cat(out, dim=-1)


class HfEncoder(FeatureSource):
    """A transformers encoder and its tokenizer, with the pooling that makes one vector per text."""

    def __init__(self, name: str, layer: str | None, pooling: str | None, allow_download: bool = False) -> None:
        from transformers import AutoModel, AutoTokenizer  # lazy: the optional `text` extra

        root = locate(name, allow_download)
        st = SentenceTransformerLayout(root)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(root))
            self.model = AutoModel.from_pretrained(str(root)).eval()
        except Exception as exc:  # no tokenizer, an architecture transformers does not know, bad weights
            raise UnknownModelError(
                f"cannot load {root} with transformers: {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        n_layers = int(getattr(self.model.config, "num_hidden_layers", 0) or 0)
        self.hidden: int | None = None
        if layer is not None:
            match = _LAYER.fullmatch(layer)
            if match is None or int(match.group(1)) > n_layers:
                raise UnknownLayerError(f"hf model layers are hidden.0 … hidden.{n_layers}, not {layer!r}")
            self.hidden = int(match.group(1))
        self.modes = st.modes if pooling is None else [{"mean": "mean_tokens", "cls": "cls_token"}[pooling]]
        self.normalize = st.normalize and layer is None and pooling is None
        self.lowercase = st.lowercase
        self.max_length = self._max_length(st)
        self.name = name
        self.weights_source = "hf"
        self.weights_identity = "hf:" + hash_json(sorted(
            (str(p.relative_to(root)), hash_file(p)) for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts
        ))
        self.layer = layer or ("sentence-transformers output" if st.present else "last hidden state")
        how = "+".join(m.removesuffix("_tokens").removesuffix("_token") for m in self.modes)
        self.pooling = (f"{how} over tokens (attention-masked)" + (", L2-normalised" if self.normalize else "")
                        + (" as modules.json says" if st.present and pooling is None else "")
                        + f"; texts truncated at {self.max_length} tokens")
        self.data_config = {"input_size": [self.max_length], "max_length": self.max_length, "modes": self.modes,
                            "normalize": self.normalize, "lowercase": self.lowercase, "hidden": self.hidden}

    def _max_length(self, st: SentenceTransformerLayout) -> int:
        limits = [st.max_length, getattr(self.tokenizer, "model_max_length", None),
                  getattr(self.model.config, "max_position_embeddings", None)]
        usable = [int(x) for x in limits if isinstance(x, int | float) and 0 < x < _MAX_SANE_LENGTH]
        return st.max_length if st.max_length else min(usable) if usable else 512

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """One padded batch, truncated at the model's maximum length."""
        if self.lowercase:
            texts = [t.lower() for t in texts]
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def forward(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """Pooled float32 features of one tokenised batch, on `device`."""
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        cuda = device.type == "cuda"
        with torch.inference_mode(), torch.autocast(device.type, enabled=cuda, dtype=torch.bfloat16):
            out = self.model(**batch, output_hidden_states=self.hidden is not None)
        tokens = (out.last_hidden_state if self.hidden is None else out.hidden_states[self.hidden]).float()
        feats = pool(tokens, batch["attention_mask"], self.modes)
        return torch.nn.functional.normalize(feats, p=2, dim=1) if self.normalize else feats

    def sorted_batches(self, texts: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, list[str]]]:
        """(positions, texts) of each batch of one chunk, longest texts first (by characters)."""
        order = np.argsort([-len(t) for t in texts.tolist()], kind="stable")
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            yield idx, [texts[i] for i in idx]

    def batches(self, split: RowSplit, device: torch.device, batch_size: int) -> Iterator[torch.Tensor]:
        self.model.to(device)
        chunk = batch_size * CHUNK_BATCHES
        for start in range(0, len(split), chunk):
            texts = split.items[start:start + chunk]
            parts, where = [], []
            for idx, batch in self.sorted_batches(texts, batch_size):
                parts.append(self.forward(self.tokenize(batch), device))
                where.append(idx)
            inverse = torch.as_tensor(np.argsort(np.concatenate(where)), device=device)
            yield torch.cat(parts)[inverse]
