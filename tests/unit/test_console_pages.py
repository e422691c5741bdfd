"""The console's web pages on the fake apiserver and store (issue 24): sign-in kept in an HttpOnly
SameSite=Strict cookie, CSRF on every change, the catalogue and its facets, a run form built from
a tool's parameters with the API's 422 shown next to the field, a viewer's 403, jobs and results.

The same pages are driven in a real Chromium on the real cluster in ``tests/e2e/test_browser.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from levrt._clients.store import JOB_RECORDS, journal_database
from levrt._console.pages import esc, results_fragment
from tests.fakes import FakeApiServer, FakeMongo
from tests.unit.console_client import console_client, own_lev_imports

ORIGIN = "http://console"


@pytest.fixture(autouse=True)
def own_imports(laptop_env: None) -> Iterator[None]:
    with own_lev_imports():
        yield


@pytest.fixture
async def browser(api: FakeApiServer, mongo: FakeMongo) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(api, tools=("portscan", "banner"), headers={"Origin": ORIGIN}) as http:
        yield http


async def sign_in(http: httpx.AsyncClient, who: str) -> str:
    """Sign in as ``who``; the page's CSRF value."""
    answer = await http.post("/sign-in", data={"token": f"token-{who}", "next": "/tools"})
    assert answer.status_code == 303 and answer.headers["location"] == "/tools"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "levrt_session=token-" in cookie
    page = await http.get("/tools")
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def test_pages_ask_to_sign_in_and_a_bad_token_is_refused(browser: httpx.AsyncClient) -> None:
    answer = await browser.get("/jobs?state=failed")
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in?next=%2Fjobs%3Fstate%3Dfailed"
    refused = await browser.post("/sign-in", data={"token": "forged", "next": "//evil.example/"})
    assert refused.status_code == 401 and "does not accept this token" in refused.text
    assert "set-cookie" not in refused.headers
    elsewhere = await browser.post("/sign-in", data={"token": "token-viewer"}, headers={"Origin": "http://evil"})
    assert elsewhere.status_code == 403
    landed = await browser.post("/sign-in", data={"token": "token-viewer", "next": "//evil.example/"})
    assert landed.headers["location"] == "/tools"  # never to another host


async def test_the_catalogue_filters_by_text_tag_and_tactic(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, "viewer")
    page = (await browser.get("/tools")).text
    assert "demo/portscan" in page and "demo/banner" in page
    assert "TA0007 Discovery" in page and 'href="/tools?tag=tcp"' in page  # facets: tactics by id and name
    by_tag = (await browser.get("/tools?tag=tcp")).text
    assert "demo/portscan" in by_tag and ">demo/banner<" not in by_tag
    by_tactic = (await browser.get("/tools?cat=TA0043")).text
    assert "demo/portscan" in by_tactic
    assert "No published tool matches" in (await browser.get("/tools?q=nothing-like-this")).text


async def test_a_tool_page_builds_its_forms_from_the_parameters(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, "viewer")
    page = (await browser.get("/tools/demo/portscan")).text
    assert '<label for="scan-tcp-target">target <abbr title="required">*</abbr></label>' in page
    assert re.search(r'<input type="text" id="scan-tcp-target" name="p.target" required', page)
    assert 'placeholder="10.0.0.1"' in page and '<option value="8000-8100">' in page  # suggested values
    assert re.search(r'<input type="number" step="1" id="scan-tcp-workers"', page)
    assert "default 64" in page and "levrt run demo/portscan:scan.tcp target=10.0.0.1" in page


async def test_a_run_is_refused_next_to_the_field_and_a_viewer_sees_the_right_it_lacks(
        browser: httpx.AsyncClient, api: FakeApiServer, mongo: FakeMongo) -> None:
    csrf = await sign_in(browser, "runner")
    form = {"csrf": csrf, "mode": "scan.tcp", "p.target": "10.0.0.1", "p.workers": "lots", "p.ports": ""}
    answer = await browser.post("/tools/demo/portscan/run", data=form)
    assert answer.status_code == 422
    assert re.search(r'id="scan-tcp-workers-error" role="alert">workers=&#x27;lots&#x27; does not match', answer.text)
    assert 'value="10.0.0.1"' in answer.text  # what was typed stays
    stale = await browser.post("/tools/demo/portscan/run", data={**form, "csrf": "0" * 40})
    assert stale.status_code == 403 and "stale" in stale.text
    await browser.post("/sign-out", data={"csrf": csrf})
    csrf = await sign_in(browser, "viewer")
    denied = await browser.post("/tools/demo/portscan/run", data={**form, "csrf": csrf, "p.workers": "8"})
    assert denied.status_code == 403 and "viewer may not create jobs.levrt.io" in denied.text
    assert not [r for r in api.requests if r.method == "POST" and r.path.endswith("/pods")]
    assert mongo[journal_database("levrt")][JOB_RECORDS].docs == []


async def test_jobs_are_yours_by_default_and_a_job_shows_its_records(browser: httpx.AsyncClient,
                                                                      mongo: FakeMongo) -> None:
    journal = mongo[journal_database("levrt")]
    for job, owner in ((1, "viewer"), (2, "someone")):
        journal[JOB_RECORDS].insert_one_now({"_id": job, "owner": owner, "state": "succeeded", "started": 10.0,
                                             "ended": 12.5, "what": {"target": "demo/portscan@1:sweep", "args": []},
                                             "value": {"open": [22]}})
    mongo["levrt"]["demo/scan@1.0"].insert_one_now(
        {"_id": {"job": 1, "task": 0}, "port": 22, "banner": {"text": "<b>ssh</b>"},
         "_artifacts": [{"name": "report.xml", "sha256": "a" * 64, "size": 2048}]})
    await sign_in(browser, "viewer")
    mine = (await browser.get("/jobs")).text
    assert 'href="/jobs/1"' in mine and 'href="/jobs/2"' not in mine
    everyone = (await browser.get("/jobs?owner=")).text
    assert 'href="/jobs/1"' in everyone and 'href="/jobs/2"' in everyone
    page = (await browser.get("/jobs/1")).text
    assert "Records: demo/scan@1.0" in page and "&lt;b&gt;ssh&lt;/b&gt;" in page  # nested, escaped
    assert f'href="/api/v1/files/{"a" * 64}" download="report.xml"' in page and "2.0 KiB" in page
    assert "&quot;open&quot;: [" in page and "Cancel job" not in page  # ended: no cancel
    assert "Resume job" not in page  # succeeded, and not a published tool's job (no archive named)
    journal[JOB_RECORDS].insert_one_now({"_id": 3, "owner": "viewer", "state": "failed", "started": 10.0, "ended": 12.5,
                                         "what": {"target": "demo/portscan@1:sweep", "args": [], "sha256": "c" * 64,
                                                  "tool": "demo/portscan", "version": "1"}})
    assert 'action="/jobs/3/resume"' in (await browser.get("/jobs/3")).text


def test_results_show_a_value_stored_apart_as_a_download() -> None:
    html = results_fragment(value=None, error=None, state="succeeded", records={
        "s@1.0": {"count": 1, "job": 3, "records": [{"task": 0, "big": {"_levrt_blob": {"sha256": "b" * 64,
                                                                                        "size": 5 << 20}}}]}})
    assert f'href="/api/v1/files/{"b" * 64}" download>stored apart, 5.0 MiB' in html
    assert esc('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"


async def test_the_api_takes_the_cookie_and_a_change_needs_the_csrf_header(browser: httpx.AsyncClient) -> None:
    csrf = await sign_in(browser, "runner")
    assert (await browser.get("/api/v1/tools")).status_code == 200
    refused = await browser.delete("/api/v1/jobs/5")
    assert refused.status_code == 403 and "x-csrf-token" in refused.json()["detail"]
    assert (await browser.delete("/api/v1/jobs/5", headers={"X-CSRF-Token": csrf})).status_code == 404
