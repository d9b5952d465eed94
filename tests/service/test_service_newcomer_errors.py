"""Issue 18: one answer names every bad field, shape and meaning alike; path errors say what to do."""

from __future__ import annotations

from redundancy.preflight import edit_distance, suggest_models
from service.core.paths import OUTSIDE, ROOTS_SETTING


def _errors(resp) -> dict[str, str]:
    assert resp.status_code == 422, resp.text
    return {e["field"]: e["reason"] for e in resp.json()["errors"]}


def test_a_bad_delta_and_a_model_typo_are_reported_together(client, job_body):
    """Before: δ = 5 (pydantic) hid the typo until δ was fixed."""
    resp = client.post("/v1/jobs", json=job_body(deltas=[5], model={"name": "resnet1888", "weights": "random"}))
    errors = _errors(resp)
    assert set(errors) == {"deltas", "model.name"}, errors
    assert "unknown timm model 'resnet1888'" in errors["model.name"]


def test_every_meaning_error_at_once(client, job_body):
    resp = client.post("/v1/jobs", json=job_body(model={"name": "resnet1888", "weights": "mine.txt"},
                                                 dataset={"spec": "mnist"}))
    assert set(_errors(resp)) == {"model.name", "model.weights", "dataset.spec"}
    assert {e["code"] for e in resp.json()["errors"]} >= {"unknown_model", "unknown_dataset"}


def test_the_suggestion_ranks_the_model_with_bundled_weights_first(client, job_body):
    resp = client.post("/v1/jobs", json=job_body(model={"name": "tf_efficientnet_lite", "weights": "bundled"}))
    reason = _errors(resp)["model.name"]
    assert "did you mean tf_efficientnet_lite0," in reason, reason
    assert suggest_models("tf_efficientnet_lite", "bundled")[0] == "tf_efficientnet_lite0"
    assert suggest_models("resnet1888", "random")[0] == "resnet18"


def test_edit_distance_against_the_obvious_definition():
    assert [edit_distance(a, b) for a, b in [("", "abc"), ("kitten", "sitting"), ("lite", "lite0"), ("ab", "ab")]] \
        == [3, 3, 1, 0]


def test_a_path_outside_the_roots_names_it_the_roots_and_the_setting(client, job_body, settings):
    resp = client.post("/v1/jobs", json=job_body(dataset={"spec": "npz:/abs/path/cifar10.npz"}))
    reason = _errors(resp)["dataset.spec"]
    assert reason.startswith(OUTSIDE) and "'/abs/path/cifar10.npz'" in reason
    assert str(settings.data_path) in reason and ROOTS_SETTING in reason
    assert "relative" not in reason


def test_a_relative_path_is_told_to_be_absolute(client, job_body):
    reason = _errors(client.post("/v1/jobs", json=job_body(dataset={"spec": "npz:data/cifar10.npz"})))["dataset.spec"]
    assert "'data/cifar10.npz' is relative" in reason and "absolute" in reason and ROOTS_SETTING in reason


def test_roots_are_hidden_when_the_server_says_so(tmp_path, settings_factory, recording_queue, job_body):
    from fastapi.testclient import TestClient

    from service.main import create_app

    settings = settings_factory(tmp_path, show_data_roots=False)
    with TestClient(create_app(settings, queue=recording_queue, maintenance=False)) as c:
        reason = _errors(c.post("/v1/jobs", json=job_body(dataset={"spec": "npz:/abs/x.npz"})))["dataset.spec"]
    assert ROOTS_SETTING in reason and str(settings.data_path) not in reason


def test_a_missing_file_under_a_root_is_a_422_at_submission(client, job_body, settings, harness):
    """Before: accepted (202), then the worker failed it with dataset_not_found."""
    missing = settings.data_path / "datasets" / "absent.npz"
    resp = client.post("/v1/jobs", json=job_body(dataset={"spec": f"npz:{missing}"}))
    assert _errors(resp)["dataset.spec"] == f"{str(missing)!r} does not exist"
    assert resp.json()["code"] == "dataset_not_found" and harness.sent == []


def test_a_model_whose_hub_weights_are_cached_ranks_first(monkeypatch):
    from redundancy import preflight

    monkeypatch.setattr(preflight, "hub_weights_cached", lambda name: (name == "resnet101", None))
    assert preflight.suggest_models("resnet1888", "hub")[0] == "resnet101"
    assert preflight.suggest_models("resnet1888", "random")[0] == "resnet18", "random weights: distance only"


def test_a_refused_callback_url_comes_with_the_other_errors(client, job_body):
    resp = client.post("/v1/jobs", json=job_body(model={"name": "resnet1888", "weights": "random"},
                                                 callback_url="http://127.0.0.1:9/hook"))
    assert set(_errors(resp)) == {"model.name", "callback_url"}
