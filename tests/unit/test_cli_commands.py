"""Every ``levrt`` subcommand, run through ``main([...])`` against the fake apiserver and store.

Why through ``main``: the exit status and where each message goes (stdout for results, stderr
for the rest) are the command's contract with scripts; ``main`` is also where errors become
exit codes (0 done, 1 failed, 2 usage mistake).
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import levrt
from levrt import Cr
from levrt._cli import main
from levrt._clients.api import ExecResult
from levrt._clients.kube import use_transport
from levrt._shapes.build import build_task
from levrt.errors import ClusterError
from levrt.podenv import PYTHON
from levrt.settings import DEFAULT_RUNTIME_IMAGE, Settings
from tests.fakes import ExecCall, FakeApiServer, FakeMongo

STORE = "mongodb://127.0.0.1:30017/"
SCHEMA = "ts/issues@1.0"


@levrt.remote
def entry() -> None:
    pass


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)


def task_pod(job: int, task: int, *, image: str = "busybox:1.36", runtime: bool = False,
             namespace: str = "levrt", attempt: int = 0) -> dict[str, Any]:
    """A task Pod as levrt builds it (``runtime``: its main runs levrt's Python; ``attempt``: a retry's)."""
    cr = Cr(image, entry=entry() if runtime else None)
    settings = Settings(namespace=namespace)
    return build_task(cr, job=job, task=task, collection="default", settings=settings, attempt=attempt).pod


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


# -- ps -------------------------------------------------------------------------------------------


# levrt ps (the store's records merged with the live Pods): tests/unit/test_ps.py.


# -- logs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "printed"), [
    (["logs", "3.0"], "scanning\n22/tcp open\n"),
    (["logs", "lev-j3-t0", "--tail", "1"], "22/tcp open\n"),
    (["logs", "3.0", "-f"], "scanning\n22/tcp open\n"),
], ids=["job.task", "pod-name-tail", "follow"])
def test_logs_prints_the_output_of_main(api: FakeApiServer, capsys: pytest.CaptureFixture[str], argv: list[str],
                                        printed: str) -> None:
    api.put(task_pod(3, 0))
    api.logs["lev-j3-t0"] = "scanning\n22/tcp open\n"
    assert main(argv) == 0
    assert out_err(capsys) == (printed, "")
    assert dict(api.requests[-1].query)["container"] == "main"


def test_a_retried_task_is_found_in_its_latest_pod(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    api.put(task_pod(3, 2, attempt=1))
    api.put(task_pod(3, 2, attempt=2))  # submitted again twice: JOB.TASK means the Pod running now
    api.logs["lev-j3-t2-r1"] = "first try\n"
    api.logs["lev-j3-t2-r2"] = "second try\n"
    assert main(["logs", "3.2"]) == 0
    assert out_err(capsys) == ("second try\n", "")


def test_logs_of_an_unknown_task_is_a_usage_error(api: FakeApiServer, mongo: FakeMongo,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)  # no Pod and no archive (tests/unit/test_log_archive.py)
    assert main(["logs", "9.9"]) == 2
    assert "No task Pod 'lev-j9-t9', and no archived logs of task 9.9" in out_err(capsys)[1]
    assert main(["logs", "9.9", "-f"]) == 2
    assert "No task Pod 'lev-j9-t9', and no archived logs" in out_err(capsys)[1]
    assert main(["logs", "nine"]) == 2  # a Pod name that is not there either (and no task's: no archive)
    assert "No task Pod 'nine' (it may have ended" in out_err(capsys)[1]
    assert main(["logs", "9.x"]) == 2
    assert "is not a task" in out_err(capsys)[1]


# -- kill -----------------------------------------------------------------------------------------


def test_kill_delivers_through_the_runtime_python_or_with_kill(api: FakeApiServer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    api.put(task_pod(3, 0, runtime=True))
    api.put(task_pod(3, 1))

    assert main(["kill", "3.0"]) == 0
    assert main(["kill", "lev-j3-t1", "-s", "TERM"]) == 0
    assert out_err(capsys) == ("SIGINT delivered to lev-j3-t0\nSIGTERM delivered to lev-j3-t1\n", "")
    runtime, plain = api.exec_calls
    assert runtime.pod == "lev-j3-t0" and runtime.container == "main"
    assert runtime.command[:2] == (PYTHON, "-c") and runtime.command[-1] == "2"
    assert "os.kill(1,s)" in runtime.command[2]
    assert plain == ExecCall("levrt", "lev-j3-t1", "main", ("kill", "-s", "TERM", "1"))


def test_kill_reports_a_failed_delivery_and_usage_mistakes(api: FakeApiServer,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    api.put(task_pod(3, 1))
    api.exec_result = ExecResult(1, b"", b"kill: can't kill pid 1: Operation not permitted\n")
    assert main(["kill", "3.1"]) == 1
    assert "Operation not permitted" in out_err(capsys)[1]

    assert main(["kill", "3.1", "-s", "SIGBOGUS"]) == 2
    assert "Unknown signal 'SIGBOGUS'" in out_err(capsys)[1]
    assert main(["kill", "7.7"]) == 2
    assert "No task Pod 'lev-j7-t7'" in out_err(capsys)[1]
    assert len(api.exec_calls) == 1


# -- get ------------------------------------------------------------------------------------------


def seed(mongo: FakeMongo, collection: str = SCHEMA) -> None:
    docs = mongo["levrt"][collection].docs
    docs.append({"_id": {"job": 1, "task": 0}, "port": 22, "banner": "SSH-2.0\r\nx"})
    docs.append({"_id": {"job": 2, "task": 0}, "port": 80})


def test_get_prints_records_as_json(mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    seed(mongo)
    assert main(["get", SCHEMA]) == 0
    assert [r["port"] for r in json.loads(out_err(capsys)[0])] == [80, 22]  # the newest job first
    assert main(["get", SCHEMA, "--job", "2"]) == 0
    assert json.loads(out_err(capsys)[0]) == [{"_id": {"job": 2, "task": 0}, "port": 80}]
    assert main(["get", SCHEMA, "--limit", "1"]) == 0
    out, err = out_err(capsys)
    assert [r["port"] for r in json.loads(out)] == [80]
    assert err == f"1 of 2 records in {SCHEMA!r}, newest first (--limit 1; --limit 0 shows all).\n"
    assert mongo.uris == [STORE] * 3 and all(c.closed for c in mongo.clients)


def test_get_table_and_empty(mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    seed(mongo)
    assert main(["get", SCHEMA, "-o", "table"]) == 0
    assert out_err(capsys)[0].splitlines() == [
        "TASK   banner         port",
        "2.0    -              80",  # no banner field
        "1.0    SSH-2.0\\r\\nx   22",  # one record, one line
    ]
    assert main(["get", SCHEMA, "--job", "3"]) == 0
    assert out_err(capsys) == ("[]\n", f"No record of job 3 in {SCHEMA!r} (it holds 2 records; `levrt get "
                                        f"{SCHEMA}` shows the newest).\n")


def test_get_ns_reads_the_namespaced_collection(mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    seed(mongo, f"httpbin|org|{SCHEMA}")
    assert main(["get", SCHEMA, "--ns", "httpbin/org"]) == 0
    assert len(json.loads(out_err(capsys)[0])) == 2
    assert main(["get", SCHEMA, "--ns", "httpbin/o|rg"]) == 2
    assert "--ns 'httpbin/o|rg'" in out_err(capsys)[1]
    assert len(mongo.uris) == 1  # a usage mistake connects to nothing


def test_get_without_a_store_uri_reads_the_platform_secret(api: FakeApiServer, mongo: FakeMongo,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    uri = "mongodb://levrt:pw@store.levrt:27017/"
    data = {"uri": base64.b64encode(uri.encode()).decode()}
    api.put({"kind": "Secret", "metadata": {"name": "levrt-store"}, "data": data})
    seed(mongo)
    assert main(["get", SCHEMA]) == 0
    assert mongo.uris == [uri]
    assert len(json.loads(out_err(capsys)[0])) == 2


def test_get_with_an_unreachable_store_fails_with_a_message(mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    mongo.unreachable = "127.0.0.1:30017: [Errno 111] Connection refused"
    assert main(["get", SCHEMA]) == 1  # not a traceback
    assert "levrt get:" in out_err(capsys)[1]


# -- gc -------------------------------------------------------------------------------------------


def leftovers(api: FakeApiServer) -> None:
    managed = {"app.kubernetes.io/managed-by": "levrt"}
    api.put(task_pod(1, 0), age=7200)
    api.put(task_pod(2, 0), age=10)
    api.put({"kind": "Secret", "metadata": {"name": "lev-j1-t0-payload", "labels": managed}}, age=7200)
    api.put({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}}, age=7200)


def test_gc_dry_run_lists_what_it_would_delete(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    leftovers(api)
    assert main(["gc", "--dry-run"]) == 0
    assert out_err(capsys)[0].splitlines() == ["would delete pods/lev-j1-t0", "would delete secrets/lev-j1-t0-payload"]
    assert not [r for r in api.requests if r.method == "DELETE"]
    assert len(api.objects) == 4


def test_gc_deletes_only_levrt_objects_older_than_asked(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    leftovers(api)
    assert main(["gc", "--older-than", "30m"]) == 0
    assert out_err(capsys)[0].splitlines() == ["deleted pods/lev-j1-t0", "deleted secrets/lev-j1-t0-payload"]
    assert (api.names("pods"), api.names("secrets"), api.names("configmaps")) == (
        ["lev-j2-t0"], [], ["kube-root-ca.crt"])
    assert main(["gc"]) == 0
    assert out_err(capsys) == ("", "Nothing to remove.\n")
    assert main(["gc", "--older-than", "soon"]) == 2


def test_gc_does_not_claim_what_it_could_not_delete(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    leftovers(api)
    api.fail("DELETE", "/api/v1/namespaces/levrt/pods/lev-j1-t0", 403,
             'pods "lev-j1-t0" is forbidden: User "dev" cannot delete resource "pods"')
    assert main(["gc"]) == 1  # the operation failed, in part
    out, err = out_err(capsys)
    assert out.splitlines() == ["deleted secrets/lev-j1-t0-payload"]
    assert "lev-j1-t0" in err and "forbidden" in err
    assert "lev-j1-t0" in api.names("pods")


# -- doctor ---------------------------------------------------------------------------------------


@pytest.fixture
def platform(api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch) -> FakeApiServer:
    """A cluster where everything doctor checks is fine."""
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    api.put({"kind": "Node", "metadata": {"name": "kind-control-plane"},
             "status": {"images": [{"names": ["docker.io/library/busybox:1.36"]}, {"names": None},
                                   {"names": [DEFAULT_RUNTIME_IMAGE]}]}})
    return api


def doctor_lines(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The checks printed: name → ``ok`` or ``FAIL`` and the detail."""
    out = {}
    for line in out_err(capsys)[0].splitlines():
        status, rest = line.split(" ", 1)
        name, _, detail = rest.strip().partition("  ")
        out[name.strip()] = f"{status} {detail.strip()}"
    return out


def test_doctor_all_ok(platform: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    checks = doctor_lines(capsys)
    assert list(checks) == ["cluster version", "runtime mode", "may create pods", "may watch pods",
                            "may create pods/exec", "may get pods/log", "may create secrets", "may create configmaps",
                            "store reachable", "store size", "runtime image on nodes"]
    assert all(v.startswith("ok ") for v in checks.values()), checks
    assert re.search(r"ok \S+ \S+ in \d+ collections; file storage \S+ B in 0 files; largest: ", checks["store size"])
    assert checks["runtime image on nodes"].endswith("on kind-control-plane")
    assert "init-container copy" in checks["runtime mode"] and "1.35" in checks["runtime mode"]  # an old server


@pytest.mark.parametrize(("breakage", "failing"), [
    (lambda api, mongo: api.denied.add(("create", "pods", "exec")), "may create pods/exec"),
    (lambda api, mongo: setattr(api, "version", "v1.27.3"), "cluster version"),
    (lambda api, mongo: setattr(mongo, "unreachable", "connection refused"), "store reachable"),
    (lambda api, mongo: api.remove("nodes", "kind-control-plane", namespace=None), "runtime image on nodes"),
], ids=["forbidden-exec", "old-cluster", "store-down", "image-missing"])
def test_doctor_fails_on_each_problem(platform: FakeApiServer, mongo: FakeMongo, capsys: pytest.CaptureFixture[str],
                                      breakage: Any, failing: str) -> None:
    breakage(platform, mongo)
    assert main(["doctor"]) == 1
    checks = doctor_lines(capsys)
    assert [name for name, v in checks.items() if v.startswith("FAIL")] == [failing]
    if failing == "cluster version":
        assert checks[failing] == "FAIL v1.27.3 (levrt needs >= 1.29)"


def test_doctor_finds_the_runtime_image_through_a_running_pod_before_the_node_lists_it(
        platform: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    # Right after `levrt up`: the image is loaded and the chart's reaper runs it, but the node lists
    # images only at its next status update.
    platform.remove("nodes", "kind-control-plane", namespace=None)
    platform.put({"kind": "Node", "metadata": {"name": "kind-control-plane"}, "status": {"images": []}}, namespace=None)
    reaper = {"kind": "Pod", "metadata": {"name": "levrt-reaper-1"},
              "spec": {"nodeName": "kind-control-plane",
                       "containers": [{"name": "reaper", "image": DEFAULT_RUNTIME_IMAGE}]},
              "status": {"phase": "Pending"}}
    platform.put(reaper)
    assert main(["doctor"]) == 1  # a Pod not running yet proves nothing
    assert doctor_lines(capsys)["runtime image on nodes"].startswith("FAIL")
    platform.remove("pods", "levrt-reaper-1")
    platform.put(dict(reaper, status={"phase": "Running"}))
    assert main(["doctor"]) == 0
    detail = doctor_lines(capsys)["runtime image on nodes"]
    assert detail.startswith("ok ") and "on kind-control-plane (a running Pod uses it" in detail


def test_doctor_without_the_right_to_list_nodes_does_not_blame_the_connection(
        platform: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    # The chart's Role is namespaced: listing nodes is forbidden to an account that has only it.
    platform.fail("GET", "/api/v1/nodes", 403, 'nodes is forbidden: User "dev" cannot list resource "nodes"')
    assert main(["doctor"]) == 1
    checks = doctor_lines(capsys)
    assert "cluster reachable" not in checks, checks
    assert checks["runtime image on nodes"].startswith("FAIL")


def test_doctor_when_the_cluster_cannot_be_reached(capsys: pytest.CaptureFixture[str]) -> None:
    def unreachable() -> FakeApiServer:
        raise ClusterError("Could not reach the Kubernetes API at https://10.0.0.1:6443")

    with use_transport(unreachable):
        assert main(["doctor"]) == 1
    assert doctor_lines(capsys) == {
        "cluster reachable": "FAIL Could not reach the Kubernetes API at https://10.0.0.1:6443"}


# -- check (up: tests/unit/test_laptop.py) ----------------------------------------------------


def test_check_prints_the_metadata_of_a_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tool.py").write_text('__lev__ = {"desc": "a tool", "modes": ["fast"]}\n')
    (tmp_path / "bare.py").write_text("X = 1\n")
    assert main(["check", str(tmp_path / "tool.py")]) == 0
    assert json.loads(out_err(capsys)[0]) == {"desc": "a tool", "modes": ["fast"]}
    assert main(["check", str(tmp_path / "bare.py")]) == 2
    assert "has no __lev__" in out_err(capsys)[1]


# -- run ------------------------------------------------------------------------------------------

ORCHESTRATION = """
from levrt import Cr


async def main(name):
    doc = await Cr("busybox:1.36", cmd=["echo", name])
    return {"job": doc.job_id, "task": doc.task_id}
"""


def test_run_runs_the_orchestration_as_one_job(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    (tmp_path / "flow.py").write_text(ORCHESTRATION)
    api.autorun(exit_code=0)
    assert main(["run", str(tmp_path / "flow.py"), "bob"]) == 0
    assert json.loads(out_err(capsys)[0]) == {"job": 1, "task": 0}
    created = next(e.object for e in api.history if e.type == "ADDED" and e.plural == "pods")
    assert created["spec"]["containers"][0]["args"] == ["echo", "bob"]
    assert api.names("pods") == []  # deleted once its result was read
    record = mongo["levrt_journal"]["levrt_tasks"].docs[0]
    assert (record["_id"], record["job"], record["task"]) == ("1.0", 1, 0)
    assert (record["state"], record["exitCode"]) == ("succeeded", 0)


def test_run_of_a_failing_task_exits_1_and_cleans_up(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    (tmp_path / "flow.py").write_text(ORCHESTRATION)
    api.autorun(exit_code=2)
    assert main(["run", f"{tmp_path / 'flow.py'}:main", "bob"]) == 1
    assert "levrt run: Task lev-j1-t0 failed: Error" in out_err(capsys)[1]
    assert api.names("pods") == []


CONCURRENT_ORCHESTRATION = """
from levrt import Concurrent, Cr


async def main():
    async with Concurrent() as c:
        for name in ("a", "b"):
            c.start(Cr("busybox:1.36", cmd=["echo", name]))
"""


def test_run_reports_each_failed_task_of_a_concurrent_block(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    (tmp_path / "flow.py").write_text(CONCURRENT_ORCHESTRATION)
    api.autorun(exit_code=3)
    assert main(["run", str(tmp_path / "flow.py")]) == 1
    err = out_err(capsys)[1]
    assert "2 of 2 tasks in Concurrent failed" in err and "unexpected" not in err
    assert "- Task lev-j1-t0 failed: Error" in err and "- Task lev-j1-t1 failed: Error" in err


def test_run_shows_the_traceback_of_the_users_own_error(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    (tmp_path / "flow.py").write_text("async def main():\n    raise ValueError('my own bug')\n")
    assert main(["run", str(tmp_path / "flow.py")]) == 1
    err = out_err(capsys)[1]
    assert "Traceback (most recent call last)" in err and "ValueError: my own bug" in err
    assert err.rstrip().endswith("levrt run: the orchestration raised the exception above.")
