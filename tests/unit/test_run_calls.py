"""``levrt run FILE:FUNC [ARG...] [NAME=VALUE...]`` through ``main([...])`` against the fake
apiserver and store: arguments converted before the job, a wrong call refused with a usage line
and exit 2 before anything is created, a mode run as a job printing its record, a file's own
``levrt.run(...)`` at import run once, and ``--in-cluster`` checking here and shipping the raw
strings. (The conversion rules themselves: tests/unit/test_callargs.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from levrt import run as run_function
from levrt._cli import main
from levrt._cli import run as run_cli
from levrt.run import _taken_over
from tests.fakes import FakeApiServer, FakeMongo

STORE = "mongodb://127.0.0.1:30017/"

FLOWS = """
from __future__ import annotations

from levrt import Cr, annot


async def main(name: str, times: int = 1, loud: bool = False, tags: list[str] | None = None) -> dict:
    doc = await Cr("busybox:1.36", cmd=["echo", *([name.upper() if loud else name] * times)])
    return {"job": doc.job_id, "task": doc.task_id, "times": times, "loud": loud, "tags": tags}


@annot.meta(desc="say hello", params=[annot.Param("who", "a name", regex=r"^[a-z]+$", holder="bob")])
def greet(who: str, times: int = 1) -> Cr:
    return Cr("busybox:1.36", cmd=["echo", *([who] * times)])


def broken(who: str) -> Cr:
    return Cr("busybox:1.36", timeout=int(who))


def helper(x: str) -> int:
    return 1
"""

SCRIPT = """
import levrt
from levrt import Cr


async def main(word="once"):
    doc = await Cr("busybox:1.36", cmd=["echo", word])
    return {"job": doc.job_id}


RESULT = levrt.run(main())
print("the file got", RESULT)
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)


@pytest.fixture
def flows(tmp_path: Path) -> str:
    (tmp_path / "flows.py").write_text(FLOWS)
    return str(tmp_path / "flows.py")


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


def pods_created(api: FakeApiServer) -> list[dict[str, Any]]:
    return [e.object for e in api.history if e.type == "ADDED" and e.plural == "pods"]


def nothing_created(api: FakeApiServer, mongo: FakeMongo) -> bool:
    """No request reached the apiserver (no Lease, no Pod; a SelfSubjectReview, asking who the client is
    for an in-cluster job's owner, creates nothing) and the store holds no record."""
    sent = [r for r in api.requests if not r.path.endswith("/selfsubjectreviews")]
    return sent == [] and all(not mongo[db][c].docs for db, c in (
        ("levrt_journal", "levrt_tasks"), ("levrt", "default"), ("levrt", "jobs"), ("levrt_journal", "levrt_jobs")))


# -- converted arguments -----------------------------------------------------------------------------


def test_a_workflow_gets_its_values_converted(api: FakeApiServer, mongo: FakeMongo, flows: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    api.autorun(exit_code=0)
    assert main(["run", flows, "bob", "times=2", "loud=yes", "tags=a,b"]) == 0
    assert json.loads(out_err(capsys)[0]) == {"job": 1, "task": 0, "times": 2, "loud": True, "tags": ["a", "b"]}
    (pod,) = pods_created(api)
    assert pod["spec"]["containers"][0]["args"] == ["echo", "BOB", "BOB"]


def test_a_mode_runs_as_a_job_that_awaits_its_cr_and_prints_its_record(
        api: FakeApiServer, mongo: FakeMongo, flows: str, capsys: pytest.CaptureFixture[str]) -> None:
    api.autorun(exit_code=0)
    mongo["levrt"]["default"].insert_one_now({"_id": {"job": 1, "task": 0}, "said": "bob bob bob"})
    assert main(["run", f"{flows}:greet", "bob", "times=3", "--no-progress"]) == 0
    out, _ = out_err(capsys)
    assert json.loads(out) == {"said": "bob bob bob"}
    (pod,) = pods_created(api)
    assert pod["spec"]["containers"][0]["args"] == ["echo", "bob", "bob", "bob"]
    assert (mongo["levrt_journal"]["levrt_tasks"].docs[0]["state"], api.names("pods")) == ("succeeded", [])


def test_a_mode_whose_task_stored_nothing_says_so(api: FakeApiServer, mongo: FakeMongo, flows: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    api.autorun(exit_code=0)
    assert main(["run", f"{flows}:greet", "who=bob"]) == 0
    out, err = out_err(capsys)
    assert out == "" and "levrt run: task 1.0 stored no record." in err


# -- a wrong call: usage line, one line, exit 2, nothing created --------------------------------------


BAD_CALLS = [
    (["1", "2", "3", "4", "5"], "main",
     "usage: levrt run {flows}:main name=STR [times=INT] [loud=BOOL] [tags=STR,...]",
     "main takes 4 arguments in order, got 5: '5' is one too many"),
    (["bob", "how=tcp"], "main", None, "main has no parameter 'how' (its parameters: name, times, loud, tags)"),
    (["bob", "times=two"], "main", None, "times='two' is not a whole number (e.g. 10)"),
    ([], "main", None, "missing name: give it as argument 1 or as name=..."),
    (["Bob"], "greet", "usage: levrt run {flows}:greet who=STR [times=INT]",
     "who='Bob' does not match ^[a-z]+$ (a name, e.g. bob)"),
    (["x"], "helper", None, "helper returns int: levrt run runs workflows (async def) and modes"),
    (["x"], "nosuch", "usage: levrt run {flows}:main name=STR [times=INT] [loud=BOOL] [tags=STR,...]",
     "has no function 'nosuch'; its workflows: main; modes: greet, broken. Name one with FILE:FUNC, as above."),
    (["x"], "gree", "usage: levrt run {flows}:greet who=STR [times=INT]", "has no function 'gree'"),
]


@pytest.mark.parametrize(("raw", "func", "usage_line", "said"), BAD_CALLS,
                         ids=[f"{f}:{' '.join(r)}" for r, f, _, _ in BAD_CALLS])
@pytest.mark.parametrize("where", ["here", "--in-cluster", "--detach"])
def test_a_wrong_call_prints_its_usage_and_exits_2_with_nothing_created(
        api: FakeApiServer, mongo: FakeMongo, flows: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, raw: list[str], func: str, usage_line: str | None, said: str,
        where: str) -> None:
    shipped: list[Any] = []
    monkeypatch.setattr(run_cli, "run_in_cluster", lambda *a, **kw: shipped.append(a) or 0)
    placement = [] if where == "here" else [where]
    assert main(["run", f"{flows}:{func}", *raw, *placement]) == 2
    usage, problem = out_err(capsys)[1].strip().splitlines()
    assert usage.startswith("usage: levrt run ") and (usage_line is None or usage == usage_line.format(flows=flows))
    assert problem.startswith("levrt run: ") and said in problem, problem
    assert "Traceback" not in problem
    assert nothing_created(api, mongo) and shipped == []


def test_a_mode_refusing_its_arguments_is_a_usage_error_before_the_job(
        api: FakeApiServer, mongo: FakeMongo, flows: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{flows}:broken", "0"]) == 2  # Cr(timeout=0): the mode's Cr is built before the job
    usage, problem = out_err(capsys)[1].strip().splitlines()
    assert usage == f"usage: levrt run {flows}:broken who=STR"
    assert problem.startswith("levrt run: broken refused these arguments: timeout=0")
    assert nothing_created(api, mongo)


def test_a_mode_whose_own_code_fails_shows_its_traceback(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "modes.py").write_text("import os\nfrom levrt import Cr\n\n\ndef scan(ip: str) -> Cr:\n"
                                       "    return Cr(os.environ['NO_SUCH_VARIABLE'], cmd=[ip])\n")
    assert main(["run", f"{tmp_path / 'modes.py'}:scan", "10.0.0.1"]) == 1
    err = out_err(capsys)[1]
    assert "KeyError: 'NO_SUCH_VARIABLE'" in err and "modes.py" in err
    assert err.rstrip().endswith("levrt run: the orchestration raised the exception above.")
    assert nothing_created(api, mongo)


def test_in_cluster_runs_ship_the_raw_strings_once_checked(api: FakeApiServer, mongo: FakeMongo, flows: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shipped: list[tuple[Any, ...]] = []
    monkeypatch.setattr(run_cli, "run_in_cluster", lambda *a, **kw: shipped.append(a) or 0)
    assert main(["run", f"{flows}:greet", "bob", "times=2", "--in-cluster"]) == 0
    assert main(["run", flows, "bob", "--detach"]) == 0
    # The mode's Cr is built by the Pod, in its environment (-e): not here, even when it would fail here.
    assert main(["run", f"{flows}:broken", "0", "--in-cluster"]) == 0
    assert shipped == [(flows, "greet", ["bob", "times=2"]), (flows, None, ["bob"]), (flows, "broken", ["0"])]
    assert nothing_created(api, mongo)


# -- levrt.run(...) at import -------------------------------------------------------------------------


def test_a_file_that_runs_itself_at_import_runs_once(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    api.autorun(exit_code=0)
    assert main(["run", str(tmp_path / "script.py")]) == 0
    out, _ = out_err(capsys)
    assert "the file got {'job': 1}" in out  # levrt.run returned the job's value to the file
    assert json.loads(out[out.index("\n{") + 1:]) == {"job": 1}  # and levrt run printed it, as a workflow's
    (pod,) = pods_created(api)
    assert pod["spec"]["containers"][0]["args"] == ["echo", "once"]
    leases = [r for r in api.requests if r.method == "POST" and r.path.endswith("/leases")]
    assert len(leases) == 1 and [d["_id"] for d in mongo["levrt_journal"]["levrt_tasks"].docs] == ["1.0"]
    assert _taken_over == [] and run_function is not None  # the hand-over ends with the import


@pytest.mark.parametrize("extra", [["again"], ["word=again"]], ids=["arg", "keyword"])
@pytest.mark.parametrize("target", ["script.py", "script.py:other"])
def test_a_file_that_runs_itself_refuses_what_it_cannot_honour_before_its_job(
        api: FakeApiServer, mongo: FakeMongo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, target: str, extra: list[str]) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    monkeypatch.chdir(tmp_path)
    argv = ["run", target] + ([] if target.endswith(":other") else extra)
    assert main(argv) == 2
    (line,) = out_err(capsys)[1].strip().splitlines()
    assert line.startswith("levrt run: script.py calls levrt.run(main(...)) when imported (line 11)"), line
    assert 'Put the call under `if __name__ == "__main__":`' in line
    assert nothing_created(api, mongo) and _taken_over == []


def test_a_file_that_runs_itself_is_checked_here_and_run_by_the_pod(
        api: FakeApiServer, mongo: FakeMongo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    shipped: list[tuple[Any, ...]] = []
    monkeypatch.setattr(run_cli, "run_in_cluster", lambda *a, **kw: shipped.append(a) or 0)
    for named in ("", ":main"):
        assert main(["run", f"{tmp_path / 'script.py'}{named}", "--in-cluster"]) == 0
    assert shipped == [(str(tmp_path / "script.py"), None, []), (str(tmp_path / "script.py"), "main", [])]
    assert "the file got" not in out_err(capsys)[0]  # its import stopped at the call: nothing ran here
    assert nothing_created(api, mongo)
