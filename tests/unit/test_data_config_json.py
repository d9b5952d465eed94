"""timm's data config through JSON and back: the one conversion every writer and reader uses."""

from __future__ import annotations

import json

from redundancy.config import data_config_as_json, data_config_from_json


def test_data_config_round_trips_through_json() -> None:
    cfg = {"input_size": (3, 64, 64), "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2), "crop_pct": 0.875,
           "interpolation": "bicubic", "crop_mode": "center"}
    as_json = data_config_as_json(cfg)
    assert as_json["input_size"] == [3, 64, 64] and as_json["crop_pct"] == 0.875
    assert data_config_from_json(json.loads(json.dumps(as_json))) == cfg
