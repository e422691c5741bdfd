"""The console's HTTP API on the fake apiserver and store (issue 23, items 3 and 4): sign-in,
rights, bodies checked before anything is created, and the answers' shapes.

The same endpoints run in the chart's Deployment against the real apiserver (TokenReview,
SubjectAccessReview with ServiceAccount tokens) in ``tests/e2e/test_console.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from levrt._cli.callargs import CallError, describe, json_tokens
from levrt._clients.store import JOB_RECORDS, Store
from levrt._console.app import API_PREFIX, ENDPOINTS, openapi_document
from levrt._console.service import Invalid, read_start
from tests.fakes import FakeApiServer, FakeMongo
from tests.unit.console_client import STORE, console_client, own_lev_imports


@pytest.fixture(autouse=True)
def own_imports(laptop_env: None) -> Iterator[None]:
    with own_lev_imports():
        yield


@pytest.fixture
async def client(api: FakeApiServer, mongo: FakeMongo) -> AsyncIterator[httpx.AsyncClient]:
    async with console_client(api) as http:
        yield http


def as_(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-{user}"}


def created(api: FakeApiServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in api.requests if r.method in ("POST", "PATCH", "DELETE")
            and "review" not in r.path]


async def test_no_token_is_401_and_a_token_without_the_right_is_403_naming_it(
        client: httpx.AsyncClient, api: FakeApiServer) -> None:
    answer = await client.get(f"{API_PREFIX}/tools")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in answer.json()["detail"]
    assert (await client.get(f"{API_PREFIX}/tools", headers={"Authorization": "Bearer forged"})).status_code == 401
    denied = await client.get(f"{API_PREFIX}/tools", headers=as_("nobody"))
    assert denied.status_code == 403
    assert "nobody may not list tools.levrt.io in namespace levrt" in denied.json()["detail"]
    denied = await client.post(f"{API_PREFIX}/jobs", headers=as_("viewer"),
                               json={"tool": "demo/portscan", "mode": "sweep"})
    assert denied.status_code == 403 and "create jobs" in denied.json()["detail"]
    assert created(api) == []  # nothing was done for a caller without the right


async def test_tools_are_found_by_text_tag_and_tactic_with_their_calls(client: httpx.AsyncClient) -> None:
    for query in ("q=connect scan", "tag=tcp", "cat=TA0007", "cat=discovery"):
        found = (await client.get(f"{API_PREFIX}/tools?{query}", headers=as_("viewer"))).json()
        assert [t["name"] for t in found["tools"]] == ["demo/portscan"], query
    assert (await client.get(f"{API_PREFIX}/tools?tag=nothing", headers=as_("viewer"))).json()["count"] == 0
    tool = (await client.get(f"{API_PREFIX}/tools/demo/portscan", headers=as_("viewer"))).json()
    assert tool["publisher"] == "tester" and tool["versions"] == [tool["version"]]
    calls = {call["name"]: call for call in tool["calls"]}
    assert set(calls) == {"scan.tcp", "scan.paths", "sweep"}
    assert calls["sweep"]["kind"] == "workflow" and calls["scan.tcp"]["kind"] == "mode"
    tcp = {p["name"]: p for p in calls["scan.tcp"]["params"]}
    assert tcp["target"]["required"] and tcp["workers"]["type"] == "INT" and tcp["ports"]["default"] == "'1-1024'"
    assert (await client.get(f"{API_PREFIX}/tools/demo/nothing", headers=as_("viewer"))).status_code == 404


@pytest.mark.parametrize(("body", "status", "field"), [
    ("not json", 422, "body"),
    ([], 422, "body"),
    ({"mode": "sweep"}, 422, "tool"),
    ({"tool": "Demo/x", "mode": "sweep"}, 422, "tool"),
    ({"tool": "demo/portscan"}, 422, "mode"),
    ({"tool": "demo/portscan", "mode": "sweep", "params": [1]}, 422, "params"),
    ({"tool": "demo/portscan", "mode": "sweep", "extra": 1}, 422, "extra"),
    ({"tool": "demo/portscan", "mode": "tcp", "params": {}}, 422, "params.target"),
    ({"tool": "demo/portscan", "mode": "tcp", "params": {"target": "h", "workers": "many"}}, 422, "params.workers"),
    ({"tool": "demo/portscan", "mode": "tcp", "params": {"target": "h", "ports": "a-b"}}, 422, "params.ports"),
    ({"tool": "demo/portscan", "mode": "tcp", "params": {"target": "h", "speed": 1}}, 422, "params.speed"),
    ({"tool": "demo/nothing", "mode": "tcp"}, 404, None),
    ({"tool": "demo/portscan", "mode": "udp"}, 404, None),
])
async def test_a_bad_start_is_refused_naming_the_field_and_nothing_is_created(
        client: httpx.AsyncClient, api: FakeApiServer, body: Any, status: int, field: str | None) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    answer = await client.post(f"{API_PREFIX}/jobs", headers=as_("runner"), content=content)
    assert answer.status_code == status, answer.text
    assert answer.json().get("field") == field
    assert answer.json()["detail"]
    assert created(api) == []


async def test_jobs_are_listed_filtered_and_read_with_their_records(
        client: httpx.AsyncClient, mongo: FakeMongo) -> None:
    jobs = mongo["levrt_journal"][JOB_RECORDS]
    for job, owner, state in ((1, "alice", "succeeded"), (2, "bob", "failed"), (3, "alice", "succeeded")):
        jobs.insert_one_now({"_id": job, "owner": owner, "state": state, "started": 1000.0 + job, "ended": 1010.0,
                             "what": {"target": "demo/portscan@1:sweep", "args": [], "tool": "demo/portscan"}})
    mongo["levrt"]["ts/scan@1.0"].insert_one_now({"_id": {"job": 3, "task": 0}, "port": 22, "raw": b"\x00"})
    listed = (await client.get(f"{API_PREFIX}/jobs?owner=alice", headers=as_("viewer"))).json()
    assert [j["job"] for j in listed["jobs"]] == [3, 1] and listed["count"] == 2
    failed = (await client.get(f"{API_PREFIX}/jobs?state=failed", headers=as_("viewer"))).json()
    assert [j["job"] for j in failed["jobs"]] == [2]
    page = (await client.get(f"{API_PREFIX}/jobs?limit=1&skip=1", headers=as_("viewer"))).json()
    assert [j["job"] for j in page["jobs"]] == [2]
    for bad, field in (("state=sleeping", "state"), ("limit=0", "limit"), ("skip=x", "skip")):
        answer = await client.get(f"{API_PREFIX}/jobs?{bad}", headers=as_("viewer"))
        assert (answer.status_code, answer.json()["field"]) == (422, field)
    job = (await client.get(f"{API_PREFIX}/jobs/3", headers=as_("viewer"))).json()
    assert job["owner"] == "alice" and job["state"] == "succeeded" and job["what"]["tool"] == "demo/portscan"
    schemas = (await client.get(f"{API_PREFIX}/jobs/3/records", headers=as_("viewer"))).json()
    assert schemas == {"schemas": {"ts/scan@1.0": 1}}
    records = (await client.get(f"{API_PREFIX}/jobs/3/records?schema=ts/scan@1.0", headers=as_("viewer"))).json()
    assert records["records"] == [{"task": 0, "port": 22, "raw": {"$base64": "AA=="}}]
    assert (await client.get(f"{API_PREFIX}/jobs/9", headers=as_("viewer"))).status_code == 404
    ended = await client.delete(f"{API_PREFIX}/jobs/3", headers=as_("runner"))
    assert ended.status_code == 409 and "not running" in ended.json()["detail"]


async def test_only_an_ended_job_of_a_published_tool_with_the_same_archive_is_resumed(
        client: httpx.AsyncClient, api: FakeApiServer, mongo: FakeMongo) -> None:
    tool = (await client.get(f"{API_PREFIX}/tools/demo/portscan", headers=as_("viewer"))).json()
    jobs = mongo["levrt_journal"][JOB_RECORDS]
    published = {"target": f"demo/portscan@{tool['version']}:sweep", "args": [], "tool": "demo/portscan",
                 "version": tool["version"]}
    jobs.insert_one_now({"_id": 4, "owner": "alice", "state": "failed", "started": 1.0, "ended": 2.0,
                         "what": {"target": "flows.py:main", "args": []}})
    jobs.insert_one_now({"_id": 5, "owner": "alice", "state": "failed", "started": 1.0, "ended": 2.0,
                         "what": {**published, "sha256": "0" * 64}})
    answer = await client.post(f"{API_PREFIX}/jobs/4/resume", headers=as_("runner"))
    assert answer.status_code == 409 and "levrt run FILE --resume 4" in answer.json()["detail"]
    answer = await client.post(f"{API_PREFIX}/jobs/5/resume", headers=as_("runner"))
    assert answer.status_code == 409 and "published again with other content" in answer.json()["detail"]
    assert (await client.post(f"{API_PREFIX}/jobs/9/resume", headers=as_("runner"))).status_code == 404
    assert (await client.post(f"{API_PREFIX}/jobs/4/resume", headers=as_("viewer"))).status_code == 403
    assert created(api) == []


async def test_a_stored_file_downloads_whole_and_a_bad_name_is_refused(
        client: httpx.AsyncClient, mongo: FakeMongo) -> None:
    from levrt._clients.blobs import FileStore

    data = bytes(range(256)) * 5000
    stored = await FileStore.of(Store.connect(STORE, database="levrt")).upload(data, name="scan/report.xml")
    answer = await client.get(f"{API_PREFIX}/files/{stored.sha256}", headers=as_("viewer"))
    assert answer.status_code == 200 and answer.content == data
    assert answer.headers["content-disposition"] == 'attachment; filename="report.xml"'
    assert (await client.get(f"{API_PREFIX}/files/{'0' * 64}", headers=as_("viewer"))).status_code == 404
    assert (await client.get(f"{API_PREFIX}/files/nope", headers=as_("viewer"))).json()["field"] == "sha256"


def test_the_openapi_document_lists_every_endpoint_with_its_right() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.")
    for endpoint in ENDPOINTS:
        path = API_PREFIX + endpoint.path.replace(":int", "")
        operation = doc["paths"][path][endpoint.method.lower()]
        assert str(endpoint.status) in operation["responses"] and "401" in operation["responses"]
        if endpoint.right:
            assert " ".join(endpoint.right) + ".levrt.io" in operation["description"]
    job_param = doc["paths"][f"{API_PREFIX}/jobs/{{job}}"]["get"]["parameters"][0]
    assert job_param == {"name": "job", "in": "path", "required": True, "schema": {"type": "integer"}}


def test_a_json_call_becomes_the_words_a_command_line_would_give() -> None:
    def scan(target: str, ports: list[int] | None = None, fast: bool = False, *extra: str, **more: str) -> None:
        pass

    described = describe(scan)
    assert json_tokens(described, {"target": "h", "ports": [22, 80], "fast": True}, target="scan") == [
        "target=h", "ports=22,80", "fast=true"]
    assert json_tokens(described, {"target": "h", "extra": ["a", "b"], "colour": "red"}, target="scan") == [
        "a", "b", "target=h", "colour=red"]
    with pytest.raises(CallError) as caught:
        json_tokens(described, {"target": "h", "ports": ["x"]}, target="scan")
    assert caught.value.field == "ports" and "'x'" in str(caught.value)
    with pytest.raises(CallError, match="single values without commas"):
        json_tokens(described, {"target": "h", "ports": ["1,2"]}, target="scan")


def test_a_start_body_is_read_strictly() -> None:
    request = read_start({"tool": "demo/portscan@1.0", "mode": "sweep", "params": {"chunks": 2}})
    assert (str(request.tool), request.mode, dict(request.params)) == ("demo/portscan@1.0", "sweep", {"chunks": 2})
    with pytest.raises(Invalid) as caught:
        read_start({"tool": "demo/portscan", "mode": ""})
    assert caught.value.field == "mode"
