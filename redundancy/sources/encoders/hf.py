"""`hf:<name or local directory>`: a Hugging Face encoder (`transformers.AutoModel` +
`AutoTokenizer`) over texts.

Pooling: `mean` (attention-masked) or `cls` when asked (`model.pooling`); otherwise what a
sentence-transformers directory says (`modules.json` with `1_Pooling/config.json`, a `Normalize`
module, `max_seq_length` and `do_lower_case` in `sentence_bert_config.json`), so the vectors equal
`SentenceTransformer(dir).encode`; a plain model gets the masked mean. `layer` `hidden.i` takes hidden
state i (0: the embeddings, N: the last layer) with the same pooling and no normalisation; none:
the pooled output the model is meant to be used with.

The layer sweep (`layers`, issue 21): a list of `hidden.i` and `output` (that pooled output), or `sweep`
(`hf_default_sweep`: every hidden state, every other one past 12, the last always, then `output` when it
differs from the last hidden state, i.e. when the layout L2-normalises). ONE forward pass per batch
(`output_hidden_states=True`) gives all of them, each pooled as a single-layer job pools it, laid side by
side in the order asked as the timm extractor lays them (`layers`, `widths`, `offsets`, `poolings`).

Offline by default: a name is looked up in the local Hugging Face cache only, unless downloads are
allowed (`ADVISOR_ALLOW_DOWNLOAD`) and `HF_HUB_OFFLINE` is not set. Texts are truncated at the
model's maximum length (the report's `input_size`), and each chunk of rows is sorted by length so
batches carry little padding."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from redundancy.config import SWEEP
from redundancy.errors import UnknownLayerError, UnknownModelError, WeightsUnavailableError
from redundancy.hashing import hash_file, hash_json
from redundancy.sources.datasets.rows import RowSplit
from redundancy.sources.encoders.base import FeatureSource

HF_PREFIX = "hf:"
ST_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")  # sentence-transformers' order
ST_MODULES = {"Transformer", "Pooling", "Normalize"}
CHUNK_BATCHES = 32  # rows are sorted by length within chunks of this many batches
_LAYER = re.compile(r"hidden\.(\d+)")
OUTPUT = "output"  # in `layers`: the pooled output the model is meant to be used with (normalised as its layout says)
DENSE_SWEEP_LAYERS = 12  # the default sweep takes every hidden state up to this one, every other one past it
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


def hf_default_sweep(n_layers: int, output_differs: bool) -> list[str]:
    """`hidden.0` (the embeddings) … `hidden.{n_layers}`, every other one past `DENSE_SWEEP_LAYERS` (the last
    always), then `output` when the model's usual embedding differs from the last hidden state's pooling."""
    keep = [i for i in range(n_layers + 1)
            if i <= DENSE_SWEEP_LAYERS or (i - DENSE_SWEEP_LAYERS) % 2 == 0 or i == n_layers]
    return [f"hidden.{i}" for i in keep] + ([OUTPUT] if output_differs else [])


def parse_layer(name: str, n_layers: int, field: str = "layer") -> int | None:
    """The hidden-state index of `hidden.i` (0 … n_layers), None for `output`; UnknownLayerError (naming the config
    `field`) otherwise."""
    match = _LAYER.fullmatch(name)
    if name == OUTPUT:
        return None
    if match is None or int(match.group(1)) > n_layers:
        raise UnknownLayerError(f"hf model layers are hidden.0 … hidden.{n_layers}, not {name!r} "
                                f"({OUTPUT!r}: the model's usual pooled output)", field=field)
    return int(match.group(1))


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
    """A transformers encoder and its tokenizer, with the pooling that makes one vector per text: of one layer
    (`layer`), or of several from one forward pass (`layers`: names, or `sweep`)."""

    def __init__(self, name: str, layer: str | None, pooling: str | None, allow_download: bool = False, *,
                 layers: Sequence[str] | str | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer  # lazy: the optional `text` extra

        if layer is not None and layers is not None:
            raise ValueError("give layer or layers, not both")
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
        self.modes = st.modes if pooling is None else [{"mean": "mean_tokens", "cls": "cls_token"}[pooling]]
        # the model's usual output is normalised as its layout says; a hidden state never is
        self.normalize = st.normalize and pooling is None and (layer is None or layer == OUTPUT)
        if layers is None:  # one layer, named as before: `hidden.i`, or what the output is
            self.layers = [layer or ("sentence-transformers output" if st.present else "last hidden state")]
            self.taps = [None if layer is None else parse_layer(layer, n_layers)]
        else:
            self.layers = hf_default_sweep(n_layers, self.normalize) if layers == SWEEP else list(layers)
            self.taps = [parse_layer(n, n_layers, "layers") for n in self.layers]
        self.hidden = self.taps[0] if len(self.taps) == 1 else None  # the single-layer attribute, as before
        self.lowercase = st.lowercase
        self.max_length = self._max_length(st)
        self.name = name
        self.weights_source = "hf"
        self.weights_identity = "hf:" + hash_json(sorted(
            (str(p.relative_to(root)), hash_file(p)) for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts
        ))
        self.layer = ",".join(self.layers)  # the one name of a single-layer encoder
        how = "+".join(m.removesuffix("_tokens").removesuffix("_token") for m in self.modes)
        self.poolings = {
            n: (f"{how} over tokens (attention-masked)" + (", L2-normalised" if self._normalised(tap) else "")
                + (" as modules.json says" if st.present and pooling is None else "")
                + f"; texts truncated at {self.max_length} tokens")
            for n, tap in zip(self.layers, self.taps, strict=True)
        }
        self.pooling = (self.poolings[self.layer] if len(self.layers) == 1
                        else "; ".join(f"{n}: {p}" for n, p in self.poolings.items()))
        self.data_config = {"input_size": [self.max_length], "max_length": self.max_length, "modes": self.modes,
                            "normalize": self.normalize, "lowercase": self.lowercase,
                            "hidden": self.hidden if len(self.taps) == 1 else self.taps}
        self._widths: list[int] | None = None

    def _normalised(self, tap: int | None) -> bool:
        return tap is None and self.normalize

    @property
    def widths(self) -> list[int]:
        """Each layer's width (from the first batch, or from one forward of one short text when asked before)."""
        if self._widths is None:
            self.forward(self.tokenize(["width"]), next(self.model.parameters()).device)
        assert self._widths is not None
        return list(self._widths)

    @property
    def offsets(self) -> list[int]:
        """Column offsets of the layers in the joined vector: columns `offsets[i] : offsets[i + 1]` are layer i."""
        out = [0]
        for w in self.widths:
            out.append(out[-1] + w)
        return out

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
        """Pooled float32 features of one tokenised batch, on `device`: every layer's, side by side, from ONE
        forward pass of the model."""
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        cuda = device.type == "cuda"
        with torch.inference_mode(), torch.autocast(device.type, enabled=cuda, dtype=torch.bfloat16):
            out = self.model(**batch, output_hidden_states=any(t is not None for t in self.taps))
        parts = []
        for tap in self.taps:
            tokens = (out.last_hidden_state if tap is None else out.hidden_states[tap]).float()
            feats = pool(tokens, batch["attention_mask"], self.modes)
            parts.append(torch.nn.functional.normalize(feats, p=2, dim=1) if self._normalised(tap) else feats)
        self._widths = [int(p.shape[1]) for p in parts]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

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
