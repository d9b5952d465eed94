"""Issue 21's bar, the layer sweep on the bundled EfficientNet-Lite0 and CIFAR-10 from ../shared/data.

- Over HTTP with the real worker: a `layers: "sweep"` job succeeds with at least 4 layers, its recommendation
  names a layer, and that layer's full-layer accuracy equals a separate single-layer job's (1e-6).
- The sweep's per-layer features equal separate single-layer extractions exactly; the model's forward runs
  once per batch; a sweep whose statistics exceed the budget is refused before extraction, naming `layers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from redundancy import AnalysisConfig, Runtime
from redundancy.errors import InvalidConfigError
from redundancy.pipeline import run_analysis
from redundancy.sources.extraction import DeviceForward
from redundancy.sources.models.layers import FeatureExtractor, default_sweep, intermediates_index
from tests.engine.served import served

MODEL = {"name": "tf_efficientnet_lite0", "weights": "bundled"}


def _body(cifar: Path, **over: object) -> dict:
    return {"model": MODEL, "dataset": {"spec": f"npz:{cifar}", "max_train": 200, "max_test": 100},
            "image_size": 64, "fractions": [0.25, 1.0], "seeds": 2, "deltas": [0.05], "bootstrap": 0,
            "baselines": [], **over}


def test_sweep_job_over_http_names_a_layer_equal_to_its_single_layer_job(tmp_path: Path,
                                                                          shared_data_dir: Path) -> None:
    cifar = shared_data_dir / "cifar10.npz"
    with served(tmp_path, f"{tmp_path}:{shared_data_dir}") as srv:
        client = srv.client
        bad = client.post("/v1/jobs", json=_body(cifar, layers="all"))
        r = client.post("/v1/jobs", json=_body(cifar, layers="sweep"))
        assert r.status_code == 202, r.text
        sweep_id = r.json()["id"]
        assert srv.run_sent() == "succeeded"
        result = client.get(f"/v1/jobs/{sweep_id}/result").json()
        rec = client.get(f"/v1/jobs/{sweep_id}/recommendation", params={"delta": 0.05}).json()
        loose = client.get(f"/v1/jobs/{sweep_id}/recommendation", params={"delta": 0.3}).json()
        pinned = client.get(f"/v1/jobs/{sweep_id}/recommendation",
                            params={"delta": 0.05, "layer": "pre_logits"}).json()
        unknown = client.get(f"/v1/jobs/{sweep_id}/recommendation", params={"layer": "nope"})
        svg = client.get(f"/v1/jobs/{sweep_id}/plot.svg")
        single = client.post("/v1/jobs", json=_body(cifar, layers=[rec["layer"]]))
        assert single.status_code == 202, single.text
        assert srv.run_sent() == "succeeded"
        one = client.get(f"/v1/jobs/{single.json()['id']}/result").json()
        sweep_artifact = client.get(f"/v1/jobs/{sweep_id}/artifact", params={"delta": 0.05})
        first = result["layers"][0]["layer"]  # a head on any swept layer (`layer=` pins it)
        first_card = client.get(f"/v1/jobs/{sweep_id}/artifact/card", params={"delta": 0.05, "layer": first})
        artifact = client.get(f"/v1/jobs/{single.json()['id']}/artifact", params={"delta": 0.05})
    assert bad.status_code == 422 and "layers" in bad.text
    layers = result["layers"]
    assert len(layers) >= 4 and layers[-1]["layer"] == "pre_logits"
    assert rec["layer"] in {x["layer"] for x in layers} and rec["reference_layer"] is not None
    chosen = next(x for x in layers if x["layer"] == rec["layer"])
    assert one["model"]["layer"] == rec["layer"] and one["model"]["d"] == chosen["d"]
    assert one["full_accuracy"] == pytest.approx(chosen["full_accuracy"], abs=1e-6)
    assert sum(x["reference"] for x in layers) == 1 and "without the test set" in result["layer_selection"]
    assert loose["k"] <= rec["k"]
    macs = [x["macs"] for x in layers]
    assert macs == sorted(macs) and 0 < layers[0]["macs_fraction"] < layers[-1]["macs_fraction"] <= 1.0
    assert all(x["latency_fraction"] > 0 for x in layers)
    assert pinned["layer"] == "pre_logits" and pinned["d"] == 1280
    assert unknown.status_code == 422 and "nope" in unknown.text
    assert svg.status_code == 200 and "one line per layer" in svg.text  # the sweep's panel
    assert all(f"{x['layer']} (d {x['d']})" in svg.text for x in layers)
    assert sweep_artifact.status_code == 200, sweep_artifact.text  # the sweep keeps every layer's statistics
    assert rec["layer"] in sweep_artifact.headers["content-disposition"]
    assert first_card.status_code == 200, first_card.text
    card = first_card.json()["model"]
    assert (card["layer"], card["d"], card["intermediates_index"]) == (first, layers[0]["d"], layers[0]["index"])
    assert artifact.status_code == 200, artifact.text
    header = json.loads(artifact.content[8:8 + int.from_bytes(artifact.content[:8], "little")])
    meta = json.loads(header["__metadata__"]["redundancy"]) if "redundancy" in header["__metadata__"] else None
    assert rec["layer"] in json.dumps(header) and "intermediates_index" in json.dumps(header), meta


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()


def test_sweep_features_equal_single_layer_extractions_exactly() -> None:
    model = _model()
    names = default_sweep(model)
    assert len(names) >= 5 and names[-1] == "pre_logits"
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        ex = FeatureExtractor(model, layers=names)
        joined = ex(x)
        offsets = ex.offsets
        for i, name in enumerate(names):
            alone = FeatureExtractor(model, None if name == "pre_logits" else name)(x)
            assert torch.equal(joined[:, offsets[i]:offsets[i + 1]], alone), name
        # the recorded index cuts the network where the hook read it
        idx = intermediates_index(model, names[2])
        inter = model.forward_intermediates(x, indices=[idx], intermediates_only=True)[0]
        assert torch.allclose(inter.mean(dim=(2, 3)), joined[:, offsets[2]:offsets[3]], atol=1e-6)


def test_the_model_runs_once_per_batch() -> None:
    model = _model()
    calls = []
    inner = model.forward_features
    model.forward_features = lambda x: (calls.append(1), inner(x))[1]  # type: ignore[method-assign]
    forward = DeviceForward(FeatureExtractor(model, layers=default_sweep(model)), "cpu")
    for _ in range(3):
        forward(torch.randn(2, 3, 64, 64))
    assert len(calls) == 3


def test_a_sweep_beyond_the_memory_budget_is_refused_before_extraction(tmp_path: Path, shared_data_dir: Path) -> None:
    config = AnalysisConfig.model_validate(_body(shared_data_dir / "cifar10.npz", layers="sweep"))
    runtime = Runtime(cache_dir=None, work_dir=tmp_path, data_root=tmp_path, device="cpu",
                      max_layer_stats_bytes=1_000_000)
    with pytest.raises(InvalidConfigError) as err:
        run_analysis(config, runtime)
    assert err.value.field == "layers" and "1,000,000 bytes" in err.value.message


def test_traced_macs_up_to_a_layer_count_by_hand() -> None:
    """A 3→8 3×3 convolution on 8×8 (padding 1) then a 8→4 linear: 8·8·8·3·9 and + 8·4 multiply-adds."""
    from redundancy.sources.models.cost import traced_macs  # noqa: PLC0415

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.fc = torch.nn.Linear(8, 4, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    x = torch.zeros(1, 3, 8, 8)
    assert traced_macs(Tiny(), "conv", x) == 8 * 8 * 8 * 3 * 9
    assert traced_macs(Tiny(), None, x) == 8 * 8 * 8 * 3 * 9 + 8 * 4
