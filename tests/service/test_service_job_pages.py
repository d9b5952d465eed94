"""The job list's rendering (``service.api.job_pages``): each job rendered once per version of its row, the page
byte for byte the slow path's (``JobList`` of ``JobOut.of``), a changed row rendered anew, the memo bounded."""

from __future__ import annotations

import sqlalchemy as sa

from service.api.job_pages import JobPages
from service.api.schemas import JobList
from service.core import queries
from service.core.db import get_sessionmaker, session_scope
from service.core.models import Job
from tests.service.job_rows import assert_pages_match_the_slow_path, slow_page, varied_jobs

OWNER = "pages"


def _rows(url: str, **over):
    params = dict(page_size=20, page_token=None, status=None, model=None, dataset=None) | over
    with get_sessionmaker(url)() as s:
        return queries.list_job_rows(queries.one_statement_read(s), OWNER, **params)


def test_every_page_equals_the_slow_path_byte_for_byte(settings) -> None:
    assert assert_pages_match_the_slow_path(settings.db_url, OWNER) >= 10 + 4 + 1 + 5  # pages walked


def test_a_row_that_changes_is_rendered_anew_and_an_unchanged_one_is_not(settings, monkeypatch) -> None:
    with session_scope(settings.db_url) as s:
        s.add_all(varied_jobs(OWNER))
    pages = JobPages()
    first = pages.page(*_rows(settings.db_url))
    assert len(pages) == 10
    rendered: list[str] = []
    original = JobPages.job

    def counting(self, row):  # noqa: ANN001
        if tuple(row) not in self._rendered:
            rendered.append(row.id)
        return original(self, row)

    monkeypatch.setattr(JobPages, "job", counting)
    assert pages.page(*_rows(settings.db_url)) == first and rendered == []  # nothing changed: nothing rendered
    changed = "00000000-0000-0000-0000-000000000001"
    with session_scope(settings.db_url) as s:
        s.execute(sa.update(Job).where(Job.id == changed).values(progress=0.5, message="batch 14/28"))
    again = pages.page(*_rows(settings.db_url))
    assert rendered == [changed]
    with get_sessionmaker(settings.db_url)() as s:
        assert again == slow_page(s, OWNER, page_size=20, page_token=None, status=None, model=None, dataset=None)[0]
    item = {j["id"]: j for j in JobList.model_validate_json(again).model_dump()["items"]}[changed]
    assert (item["progress"], item["message"]) == (0.5, "batch 14/28")


def test_the_memo_keeps_at_most_max_rows(settings) -> None:
    with session_scope(settings.db_url) as s:
        s.add_all(varied_jobs(OWNER))
    pages = JobPages(max_rows=3)
    rows, token = _rows(settings.db_url)
    assert JobList.model_validate_json(pages.page(rows, token)).items[0].id == rows[0].id
    assert len(pages) == 3
    assert [tuple(r) for r in rows[-3:]] == list(pages._rendered)  # the last three rendered stay


def test_the_list_route_answers_the_rendered_page(harness) -> None:
    ids = [harness.submit()["id"] for _ in range(3)]
    r = harness.client.get("/v1/jobs", params={"page_size": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    page = JobList.model_validate(r.json())
    assert [j.id for j in page.items] == ids[::-1][:2] and page.next_page_token
    with get_sessionmaker(harness.settings.db_url)() as s:
        slow, _ = slow_page(s, "", page_size=2, page_token=None, status=None, model=None, dataset=None)
    assert r.content == slow
