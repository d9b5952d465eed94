"""Issue 18 on the client commands, in-process against the real API app (fake engine): one option
vocabulary, output files positional or -o, short id prefixes, a headed jobs table, every bad field of
a submission listed and exit code 2."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from advisor_client import Advisor, JobIdNotResolved
from advisor_client import cli as client_cli
from advisor_client.models import DEFAULT_SEED, DEFAULT_SEEDS, JobInfo
from fastapi.testclient import TestClient

from redundancy.config import AnalysisConfig
from service.cli import build_parser
from service.main import create_app
from tests.service.conftest import FakeEngine, Harness, make_settings, small_job


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    from service.core import migrate  # lazy: only these tests need a database

    settings = make_settings(tmp_path)
    migrate.upgrade(settings.db_url)
    h = Harness(settings, None, FakeEngine())  # type: ignore[arg-type]
    with TestClient(create_app(settings, queue=h, maintenance=False)) as client:
        h.client = client
        yield h


@pytest.fixture
def advisor(harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`advisor(*argv)` → (exit code, stdout, stderr): the `advisor` command's client commands, talking
    to the in-process app."""
    monkeypatch.setattr(client_cli, "Advisor", lambda url, key: _advisor(harness))
    parser = build_parser()

    def run(*argv: str) -> tuple[int, str, str]:
        args = parser.parse_args(list(argv))
        code = int(args.func(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _advisor(harness: Harness) -> Advisor:
    """A client whose requests the in-process app answers."""

    def handle(request: httpx.Request) -> httpx.Response:
        r = harness.client.request(request.method, request.url.raw_path.decode(), content=request.content,
                                   headers={k: v for k, v in request.headers.items() if k.lower() != "host"})
        skip = {"content-encoding", "content-length", "transfer-encoding"}
        return httpx.Response(r.status_code, headers={k: v for k, v in r.headers.items() if k.lower() not in skip},
                              content=r.content)

    return Advisor("http://testserver", transport=httpx.MockTransport(handle))


def _done(harness: Harness, **over: Any) -> str:
    job = harness.submit(small_job(**over))
    harness.run_all()
    return job["id"]


def test_recommend_takes_delta_mode_as_analyze_and_submit_do(harness, advisor):
    """Before: `advisor recommend ID --delta-mode relative` → unrecognized arguments (it said --mode)."""
    job_id = _done(harness)
    code, out, err = advisor("recommend", job_id, "--delta-mode", "absolute", "--delta", "0.05", "--json")
    assert code == 0, err
    assert json.loads(out)["mode"] == "absolute"
    assert advisor("recommend", job_id, "--mode", "absolute", "--json")[0] == 0  # the old spelling still works


def test_plot_and_result_take_the_output_positionally_or_with_o(harness, advisor, tmp_path):
    """Before: `advisor plot ID curve.png` failed (it needed -o)."""
    job_id = _done(harness)
    code, _, err = advisor("plot", job_id, str(tmp_path / "curve.png"))
    assert code == 0, err and (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert advisor("plot", job_id, "-o", str(tmp_path / "c.svg"))[0] == 0 and (tmp_path / "c.svg").exists()
    assert advisor("result", job_id, str(tmp_path / "r.json"))[0] == 0
    assert json.loads((tmp_path / "r.json").read_text())["config"]["model"]["name"] == "resnet18"
    code, _, err = advisor("plot", job_id, str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"))
    assert code == 2 and "[output]" in err
    code, _, err = advisor("plot", job_id)
    assert code == 2 and "[output]: give the file to write" in err


def test_a_short_id_works_wherever_an_id_does(harness, advisor):
    """Before: `advisor status efe808aa` (the id the UI list and the progress line show) → 404."""
    job_id = _done(harness)
    for command in (["status"], ["recommend"], ["result"], ["plot", "/dev/null/x.svg"], ["cancel"]):
        code, out, err = advisor(command[0], job_id[:8], *command[1:], "--json")
        assert "404" not in err and "job id" not in err, (command, err)
        if command[0] in ("status", "recommend"):
            assert code == 0 and job_id in out, (command, err)
    code, _, err = advisor("status", job_id[:5])
    assert code == 2 and "too short" in err


def test_an_ambiguous_prefix_is_a_clear_error(harness, monkeypatch):
    """Two ids sharing a prefix: the prefix names both and asks for more characters."""
    ids = [_done(harness), _done(harness)]
    shared = "abcdef"
    real = _advisor(harness)
    fake = [f"{shared}{i}{ids[i][7:]}" for i in range(2)]  # two ids starting with the same 6 characters
    page = {"items": [{**harness.client.get(f"/v1/jobs/{j}").json(), "id": f} for j, f in zip(ids, fake, strict=True)],
            "next_page_token": None}
    monkeypatch.setattr(real.http, "request", lambda method, path, **kw: _Resp(page))
    with pytest.raises(JobIdNotResolved, match="ambiguous: it starts 2 jobs"):
        real.resolve_id(shared)
    assert real.resolve_id(fake[1][:7]) == fake[1]
    with pytest.raises(JobIdNotResolved, match="no job of yours"):
        real.resolve_id("ffffff")


class _Resp:
    def __init__(self, doc: dict) -> None:
        self.doc = doc

    def json(self) -> dict:
        return self.doc


def test_jobs_is_a_headed_table_with_model_dataset_age_answer_and_seed(harness, advisor):
    """Before: id, status, stage, %, time with no header; jobs differing only in seed looked alike."""
    a = _done(harness)
    b = _done(harness, seed=7)
    code, out, err = advisor("jobs")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "MODEL", "DATASET", "STATUS", "AGE", "ANSWER", "(first", "δ)", "NOTE"]
    rows = {line[:8]: line for line in lines[1:]}
    assert set(rows) == {a[:8], b[:8]}
    for row in rows.values():
        assert "resnet18" in row and "digits" in row and "succeeded" in row and "keep " in row and "at δ 0.01" in row
    assert "seed 7, seeds 2" in rows[b[:8]] and "seed " not in rows[a[:8]] and "seeds 2" in rows[a[:8]]
    code, out, _ = advisor("jobs", "--json")
    assert code == 0 and {j["id"] for j in json.loads(out)["jobs"]} == {a, b}


def test_the_jobs_table_cells():
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert [client_cli.age(now - dt.timedelta(seconds=s), now) for s in (5, 125, 7200, 200000)] == \
        ["5s", "2m", "2h", "2d"]
    assert client_cli.seed_note({"seed": DEFAULT_SEED, "seeds": DEFAULT_SEEDS}) == ""
    assert client_cli.seed_note({"seed": 3, "seeds": 2}) == "seed 3, seeds 2"
    info = JobInfo.model_validate({"id": str(uuid.uuid4()), "status": "queued", "created_at": now.isoformat(),
                                   "config_hash": "x", "request": {}, "links": {k: "" for k in (
                                       "self", "result", "recommendation", "cancel", "plot_png", "plot_svg")}})
    assert "-" in client_cli.format_jobs([info], {}, now).splitlines()[1]


def test_the_clients_seed_defaults_are_the_engines():
    fields = AnalysisConfig.model_fields
    assert (fields["seed"].default, fields["seeds"].default) == (DEFAULT_SEED, DEFAULT_SEEDS)


def test_submit_lists_every_bad_field_and_exits_2(harness, advisor):
    """The server's 422 names δ and the model typo together; the CLI prints one line for each."""
    code, _, err = advisor("submit", "--model", "tf_efficientnet_lite", "--weights", "bundled", "--dataset",
                           "digits", "--delta", "5")
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("advisor: error [")]
    assert [line.split("]")[0] for line in lines] == ["advisor: error [deltas", "advisor: error [model.name"], err
    assert "did you mean tf_efficientnet_lite0," in err


def test_submit_without_model_and_dataset_names_both(advisor):
    code, _, err = advisor("submit", "--seeds", "2")
    assert code == 2
    assert "[model.name]: required: give --model" in err and "[dataset.spec]: required: give --dataset" in err
