"""The console's HTTP API on the real cluster (issue 23, items 3, 4 and 6): the chart's
``levrt-console`` Deployment, signed into with real ServiceAccount tokens bound to the chart's Roles.

Why on the cluster: who a token is and what it may do is decided by the apiserver (TokenReview,
SubjectAccessReview over the installed Roles), and a job started through the API is a real
orchestration Pod running a published tool from the registry in the store. Checked here: the
401/403 matrix of every endpoint for each role (nothing done on a refusal); a mode and a workflow run
with parameters, their records read back; the event stream reporting a task's states; logs of a
finished task read after its Pod is gone; a long job cancelled; bad bodies refused naming the field.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest

from levrt._clients.kube import Kube
from levrt._clients.store import JOB_RECORDS
from levrt._core.registry import REGISTRY_DATABASE, TOOLS
from levrt._shapes.names import api_path
from tests.e2e.conftest import BUSYBOX
from tests.e2e.console_parts import kubectl, make_tokens, publish, remove_accounts, sleepy_tool

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
ROLES = {"viewer": "levrt-viewer", "runner": "levrt-runner", "publisher": "levrt-publisher", "nobody": None}
ACCOUNT = "console-test-{}"
API = "/api/v1"
# (method, path, body, the right it needs); bodies and ids an allowed caller gets a 4xx for, so the
# matrix starts nothing (the runs below do).
MATRIX: list[tuple[str, str, Any, str]] = [
    ("GET", "/tools", None, "list tools"),
    ("GET", "/tools/demo/portscan", None, "get tools"),
    ("POST", "/jobs", {"tool": "demo/portscan", "mode": "scan.tcp", "params": {}}, "create jobs"),
    ("GET", "/jobs", None, "list jobs"),
    ("GET", "/jobs/999999", None, "get jobs"),
    ("DELETE", "/jobs/999999", None, "delete jobs"),
    ("POST", "/jobs/999999/resume", None, "create jobs"),
    ("GET", "/jobs/999999/tasks/0/logs", None, "get jobs"),
    ("GET", "/jobs/999999/records", None, "get jobs"),
    ("GET", "/jobs/999999/events", None, "get jobs"),
    ("GET", "/files/" + "0" * 64, None, "get jobs"),
]
GRANTS = {
    "viewer": {"list tools", "get tools", "list jobs", "get jobs"},
    "runner": {"list tools", "get tools", "list jobs", "get jobs", "create jobs", "delete jobs"},
    "publisher": {"list tools", "get tools"},
    "nobody": set(),
}
@pytest.fixture(scope="module")
def tokens(kube_cluster: Any) -> Iterator[dict[str, str]]:
    """A token of a ServiceAccount bound to each of the chart's Roles (and one bound to none)."""
    yield make_tokens(kube_cluster, ROLES, ACCOUNT)
    remove_accounts(kube_cluster, ROLES, ACCOUNT)


@pytest.fixture(scope="module")
def published(kube_cluster: Any, cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    """The demo packages and a sleeping test tool published; the settings every orchestration Pod reads
    name the test cluster's busybox (the demo tools read LEVRT_EXAMPLE_IMAGE)."""
    store: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(cli_env["LEVRT_STORE_URI"])
    publish(cli_env, REPO / "examples/lev/demo/portscan", REPO / "examples/lev/demo/banner",
            sleepy_tool(tmp_path_factory.mktemp("tools"), "ctest"))
    kubectl(kube_cluster, "patch", "configmap", "levrt-settings", "--type", "merge",
            "-p", json.dumps({"data": {"LEVRT_EXAMPLE_IMAGE": BUSYBOX}}))
    try:
        yield store
    finally:
        kubectl(kube_cluster, "patch", "configmap", "levrt-settings", "--type", "json",
                "-p", '[{"op": "remove", "path": "/data/LEVRT_EXAMPLE_IMAGE"}]', check=False)
        store[REGISTRY_DATABASE][TOOLS].delete_many({"namespace": {"$in": ["demo", "ctest"]}})
        store.close()


@pytest.fixture
async def console(kube_cluster: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the console's Pod (this host routes to Pod addresses), once it is ready."""
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    try:
        deadline = time.monotonic() + 120
        while True:
            listing = await kube.request("GET", api_path("pods", namespace=kube_cluster.namespace),
                                         query={"labelSelector": "app.kubernetes.io/component=console"})
            ready = [p for p in listing["items"] if any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in p["status"].get("conditions", []))]
            if ready:
                break
            assert time.monotonic() < deadline, "the console never became ready"
            await asyncio.sleep(1)
    finally:
        await kube.close()
    async with httpx.AsyncClient(base_url=f"http://{ready[0]['status']['podIP']}:8080", timeout=60) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_endpoint_needs_a_token_and_its_right(console: httpx.AsyncClient, tokens: dict[str, str],
                                                          published: Any) -> None:
    jobs = published["levrt_journal"][JOB_RECORDS]
    before = jobs.count_documents({})
    wrong = []
    for method, path, body, right in MATRIX:
        anonymous = await console.request(method, API + path, json=body)
        if anonymous.status_code != 401:
            wrong.append(f"{method} {path} without a token: {anonymous.status_code}")
        forged = await console.request(method, API + path, json=body, headers=bearer("not-a-token"))
        if forged.status_code != 401:
            wrong.append(f"{method} {path} with a forged token: {forged.status_code}")
        for who, token in tokens.items():
            answer = await console.request(method, API + path, json=body, headers=bearer(token))
            allowed = right in GRANTS[who]
            if (answer.status_code in (401, 403)) if allowed else answer.status_code != 403:
                wrong.append(f"{method} {path} as {who}: {answer.status_code} {answer.text[:200]}")
            if not allowed and right.split()[1] + ".levrt.io" not in answer.json().get("detail", ""):
                wrong.append(f"{method} {path} as {who}: the 403 does not name the right: {answer.text[:200]}")
    print(f"\nconsole matrix: {len(MATRIX)} endpoints x {len(tokens) + 2} callers, {len(wrong)} wrong")
    assert not wrong, "\n".join(wrong)
    assert jobs.count_documents({}) == before  # no refused (or 4xx) request started a job
    spec = (await console.get(f"{API}/openapi.json")).json()
    assert {f"{API}/tools", f"{API}/jobs", f"{API}/jobs/{{job}}/events"} <= set(spec["paths"])


async def test_bad_bodies_and_parameters_are_refused_naming_the_field(
        console: httpx.AsyncClient, tokens: dict[str, str], published: Any) -> None:
    jobs = published["levrt_journal"][JOB_RECORDS]
    before = jobs.count_documents({})
    runner = bearer(tokens["runner"])
    cases = [
        ("{", 422, "body"), ('{"mode": "sweep"}', 422, "tool"), ('{"tool": "demo/portscan"}', 422, "mode"),
        ('{"tool": "demo/portscan", "mode": "sweep", "params": {"chunks": "x"}}', 422, "params.chunks"),
        ('{"tool": "demo/portscan", "mode": "sweep", "params": {"hosts": 1}}', 422, "params.hosts"),
        ('{"tool": "demo/portscan", "mode": "tcp", "params": {}}', 422, "params.target"),
        ('{"tool": "demo/portscan", "mode": "nope"}', 404, None), ('{"tool": "demo/none", "mode": "x"}', 404, None),
    ]
    for body, status, field in cases:
        answer = await console.post(f"{API}/jobs", content=body, headers=runner)
        assert (answer.status_code, answer.json().get("field")) == (status, field), (body, answer.text)
    for query, field in (("state=asleep", "state"), ("limit=100000", "limit")):
        answer = await console.get(f"{API}/jobs?{query}", headers=runner)
        assert (answer.status_code, answer.json()["field"]) == (422, field)
    assert jobs.count_documents({}) == before


async def events_until_end(console: httpx.AsyncClient, job: int, token: str) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    async with console.stream("GET", f"{API}/jobs/{job}/events", headers=bearer(token), timeout=300) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                seen.append((name, json.loads(line[6:])))
                if name == "end":
                    break
    return seen


async def test_a_workflow_and_a_mode_run_through_the_api_and_their_results_read_back(
        console: httpx.AsyncClient, tokens: dict[str, str], published: Any) -> None:
    runner, viewer = tokens["runner"], tokens["viewer"]
    found = (await console.get(f"{API}/tools?cat=discovery", headers=bearer(viewer))).json()
    assert {"demo/portscan", "demo/banner"} <= {t["name"] for t in found["tools"]}
    started = await console.post(f"{API}/jobs", headers=bearer(runner),
                                 json={"tool": "demo/portscan", "mode": "sweep", "params": {"chunks": 1}})
    assert started.status_code == 201, started.text
    job = started.json()["job"]
    assert started.json()["owner"] == f"system:serviceaccount:levrt:{ACCOUNT.format('runner')}"
    events = await events_until_end(console, job, viewer)
    states = {data["task"]: [] for name, data in events if name == "task"}
    for name, data in events:
        if name == "task":
            states[data["task"]].append(data["state"])
    assert events[-1] == ("end", {"job": job, "state": "succeeded"}), events[-3:]
    assert states and all(s[-1] == "done" for s in states.values()), states
    assert any(len(s) > 1 for s in states.values()), f"no task was seen changing state: {states}"

    record = (await console.get(f"{API}/jobs/{job}", headers=bearer(viewer))).json()
    assert record["owner"] == started.json()["owner"] and record["where"] == "detached"
    assert record["what"]["tool"] == "demo/portscan" and record["state"] == "succeeded"
    assert record["value"]["open"] == [2222, 8080], record["value"]
    mine = (await console.get(f"{API}/jobs?tool=demo/portscan&owner={record['owner']}", headers=bearer(viewer))).json()
    assert job in [row["job"] for row in mine["jobs"]]
    schemas = (await console.get(f"{API}/jobs/{job}/records", headers=bearer(viewer))).json()["schemas"]
    assert schemas, "the sweep's tasks wrote no records"
    schema = sorted(schemas)[0]
    ns, _, plain = schema.rpartition("|")
    records = (await console.get(f"{API}/jobs/{job}/records", params={"schema": plain, "ns": ns.replace("|", "/")
                                                                       or None}, headers=bearer(viewer))).json()
    assert records["count"] == schemas[schema] and len(records["records"]) == schemas[schema]

    # Its tasks' Pods are gone once it ended: their logs come from the archive.
    first = record["taskList"][0]["task"].split(".")[1]
    logs = await console.get(f"{API}/jobs/{job}/tasks/{first}/logs", headers=bearer(viewer))
    assert logs.status_code == 200 and logs.headers["x-levrt-log-source"] == "archive", logs.text

    mode = await console.post(f"{API}/jobs", headers=bearer(runner),
                              json={"tool": "demo/portscan", "mode": "tcp",
                                    "params": {"target": "127.0.0.1", "ports": "1-20", "workers": 4}})
    assert mode.status_code == 201, mode.text
    mode_events = await events_until_end(console, mode.json()["job"], viewer)
    assert mode_events[-1][1]["state"] == "succeeded", mode_events[-3:]
    mode_record = (await console.get(f"{API}/jobs/{mode.json()['job']}", headers=bearer(viewer))).json()
    assert mode_record["args"] == ["target=127.0.0.1", "ports=1-20", "workers=4"]


async def test_an_ended_job_is_resumed_taking_what_succeeded(console: httpx.AsyncClient, tokens: dict[str, str],
                                                            published: Any) -> None:
    runner, viewer = tokens["runner"], tokens["viewer"]
    started = await console.post(f"{API}/jobs", headers=bearer(runner),
                                 json={"tool": "ctest/sleepy", "mode": "nap", "params": {"seconds": 1}})
    assert started.status_code == 201, started.text
    job = started.json()["job"]
    assert (await events_until_end(console, job, viewer))[-1][1]["state"] == "succeeded"
    refused = await console.post(f"{API}/jobs/{job}/resume", headers=bearer(viewer))
    assert refused.status_code == 403, refused.text
    resumed = await console.post(f"{API}/jobs/{job}/resume", headers=bearer(runner))
    assert resumed.status_code == 201 and resumed.json()["resumes"] == job, resumed.text
    again = resumed.json()["job"]
    assert (await events_until_end(console, again, viewer))[-1][1]["state"] == "succeeded"
    record = (await console.get(f"{API}/jobs/{again}", headers=bearer(viewer))).json()
    assert record["what"]["resume"] == job and record["what"]["tool"] == "ctest/sleepy", record["what"]
    assert [t["state"] for t in record["taskList"]] == ["cached"], record["taskList"]


async def test_a_long_job_is_cancelled(console: httpx.AsyncClient, tokens: dict[str, str], published: Any,
                                       kube_cluster: Any) -> None:
    runner = bearer(tokens["runner"])
    started = await console.post(f"{API}/jobs", headers=runner,
                                 json={"tool": "ctest/sleepy", "mode": "nap", "params": {"seconds": 600}})
    assert started.status_code == 201, started.text
    job = started.json()["job"]
    deadline = time.monotonic() + 120
    while True:
        view = (await console.get(f"{API}/jobs/{job}", headers=runner)).json()
        if any(t["state"] == "running" for t in view["taskList"]):
            break
        assert time.monotonic() < deadline, view
        await asyncio.sleep(1)
    cancel = await console.delete(f"{API}/jobs/{job}", headers=runner)
    assert cancel.status_code == 202 and cancel.json()["cancelling"], cancel.text
    deadline = time.monotonic() + 90
    while (view := (await console.get(f"{API}/jobs/{job}", headers=runner)).json())["state"] == "running":
        assert time.monotonic() < deadline, view
        await asyncio.sleep(1)
    assert view["state"] in ("cancelled", "failed"), view
    assert view["duration"] < 200  # it did not sleep its 600 s
    left = kubectl(kube_cluster, "get", "pods", "-l", f"levrt.io/job={job}", "-o", "name")
    deadline = time.monotonic() + 60
    while left.strip() and time.monotonic() < deadline:
        await asyncio.sleep(1)
        left = kubectl(kube_cluster, "get", "pods", "-l", f"levrt.io/job={job}", "-o", "name")
    assert not left.strip(), left
    again = await console.delete(f"{API}/jobs/{job}", headers=runner)
    assert again.status_code == 409


def test_levrt_console_forwards_a_local_port_and_says_how_to_sign_in(cli_env: dict[str, str],
                                                                      tokens: dict[str, str]) -> None:
    with subprocess.Popen([sys.executable, "-m", "levrt", "console", "--port", "0"], env=cli_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as forward:
        try:
            assert forward.stdout is not None and forward.stderr is not None
            said = forward.stdout.readline()
            assert said.startswith("levrt console: the API is at http://127.0.0.1:"), said + (
                forward.stderr.read() if forward.poll() is not None else "")
            base = said.split()[6]  # http://127.0.0.1:PORT/api/v1
            rest = "".join(forward.stdout.readline() for _ in range(5))
            assert "kubectl -n levrt create token analyst" in rest and "--role levrt-runner" in rest, rest
            answer = httpx.get(f"{base}/tools", headers=bearer(tokens["viewer"]), timeout=30)
            assert answer.status_code == 200 and "tools" in answer.json()
            assert httpx.get(f"{base}/tools", timeout=30).status_code == 401
        finally:
            forward.terminate()
            forward.communicate(timeout=30)
