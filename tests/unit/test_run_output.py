"""What ``levrt run`` prints where there is no terminal, and what its summary says at the end.

Why these tests: ``--no-progress``, a piped output and an orchestration Pod (read with ``levrt logs``)
printed only ``progress: 0.1 ... 1`` (no names, no summary, going back to 0 at each ``Concurrent``
block); after Ctrl-C the summary counted the tasks it had just deleted as running; and a failed
entry's summary quoted the Pod's ``Normal`` events instead of its traceback (issue 22). The plain
lines come from a pure function of the rows (checked on a recorded sequence), the rest from a job
on the fake cluster and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from levrt import Concurrent, Cr, TaskFailed
from levrt._cli import plain
from levrt._cli.display import Row, live_progress, summary_lines
from levrt._cli.plain import StateLines, plain_progress
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from levrt._core.engine import Engine
from levrt._shapes.failures import traceback_tail
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

IMG = "busybox:1.36"
SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
TRACEBACK = """\
scanning 10.0.0.99
Traceback (most recent call last):
  File "/levrt/lib/python3.11/site-packages/levrt/runtime/process.py", line 144, in main
    run_entry(func, args, kwargs)
  File "/levrt/lib/python3.11/site-packages/levrt/runtime/process.py", line 71, in run_entry
    func(*args, **kwargs)
  File "/orchestration/flow.py", line 9, in probe
    connect(ip)
  File "/orchestration/flow.py", line 5, in connect
    raise RuntimeError(f"target unreachable: {ip}")
RuntimeError: target unreachable: 10.0.0.99
"""
NORMAL_EVENTS = [("Normal", "Scheduled", "Successfully assigned levrt/lev-j1-t1 to kind-worker"),
                 ("Normal", "Pulled", "Container image already present on machine"),
                 ("Normal", "Created", "Created container main"),
                 ("Normal", "Started", "Started container main")]


def scan(ip: str) -> Cr:  # a mode: the task is named after it
    return Cr(IMG, cmd=["true"])


# -- the plain lines, from a recorded sequence of states ------------------------------------------


def row(index: int, state: str, elapsed: float = 1.0, *, retries: str = "-", reason: str = "") -> Row:
    return Row(id=f"12.{index}", index=index, name=f"tcpscan.scan(10.0.0.{index}, 2200-2219)", state=state,
               elapsed=elapsed, retries=retries, host="-", pod=f"lev-j12-t{index}", node="-", reason=reason)


def test_one_line_per_change_of_state_never_a_line_again_for_the_same_state() -> None:
    recorded = [
        [row(3, "pending")],
        [row(3, "pending(ContainerCreating)"), row(4, "pending")],  # the same word: no line
        [row(3, "running"), row(4, "running")],
        [row(3, "ending", 3.1), row(4, "running")],  # a moment between the Pod's end and done(): no line
        # The Pod ended failed, its failure not read yet (CI saw "failed in 1.0s (failed(Error))"): no line.
        [row(3, "done", 3.1), row(4, "failed(Error)", 4.0)],
        [row(3, "done", 3.1), row(4, "failed(Error)", 4.25, reason="RuntimeError: target unreachable")],
        [row(3, "done", 3.1), row(4, "failed(Error)", 4.25, reason="RuntimeError: target unreachable")],
    ]
    lines = StateLines()
    printed = [line for rows in recorded for line in lines.changes(rows)]
    assert printed == [
        "12.3 tcpscan.scan(10.0.0.3, 2200-2219): pending",
        "12.4 tcpscan.scan(10.0.0.4, 2200-2219): pending",
        "12.3 tcpscan.scan(10.0.0.3, 2200-2219): running",
        "12.4 tcpscan.scan(10.0.0.4, 2200-2219): running",
        "12.3 tcpscan.scan(10.0.0.3, 2200-2219): done in 3.1s",
        "12.4 tcpscan.scan(10.0.0.4, 2200-2219): failed in 4.2s (RuntimeError: target unreachable)",
    ]


def test_a_failure_whose_reason_never_came_is_printed_at_the_end() -> None:
    lines = StateLines()
    assert lines.changes([row(5, "failed(Error)")]) == []
    assert lines.changes([row(5, "failed(Error)")], final=True) == [
        "12.5 tcpscan.scan(10.0.0.5, 2200-2219): failed in 1.0s (failed(Error))"]


def test_a_retry_timeout_and_what_a_run_left_are_changes_too() -> None:
    lines = StateLines()
    assert lines.changes([row(1, "running", retries="0/2"), row(2, "running")]) == [
        "12.1 tcpscan.scan(10.0.0.1, 2200-2219): running", "12.2 tcpscan.scan(10.0.0.2, 2200-2219): running"]
    assert lines.changes([row(1, "pending", retries="1/2"), row(2, "timed-out", 30.0)]) == [
        "12.1 tcpscan.scan(10.0.0.1, 2200-2219): pending (retry 1/2)",
        "12.2 tcpscan.scan(10.0.0.2, 2200-2219): timed out after 30.0s"]
    assert lines.changes([row(1, "running", retries="1/2")]) == [
        "12.1 tcpscan.scan(10.0.0.1, 2200-2219): running (retry 1/2)"]
    assert lines.changes([row(1, "cancelled", retries="1/2")]) == [
        "12.1 tcpscan.scan(10.0.0.1, 2200-2219): cancelled (retry 1/2)"]


def test_the_summary_counts_what_a_run_left_as_such() -> None:
    rows = [row(0, "done"), row(1, "cancelled"), row(2, "cancelled"), row(3, "deleted")]
    assert summary_lines(12, rows, wall=8.0) == ["job 12: 4 tasks (1 done, 2 cancelled, 1 deleted) in 8.0s"]


def test_a_failure_in_the_summary_shows_its_traceback_lines_under_it() -> None:
    failed = Row(id="12.4", index=4, name="flow.probe(10.0.0.99)", state="failed(Error)", elapsed=2.0, retries="-",
                 host="-", pod="lev-j12-t4", node="-", reason="RuntimeError: target unreachable: 10.0.0.99",
                 details=('  File "/orchestration/flow.py", line 5, in connect',
                          "RuntimeError: target unreachable: 10.0.0.99"))
    assert summary_lines(12, [row(0, "done"), failed], wall=2.0) == [
        "job 12: 2 tasks (1 done, 1 failed) in 2.0s",
        "  failed 12.4 flow.probe(10.0.0.99): RuntimeError: target unreachable: 10.0.0.99",
        '      File "/orchestration/flow.py", line 5, in connect',
        "    RuntimeError: target unreachable: 10.0.0.99",
    ]


# -- the traceback in a task's output -----------------------------------------------------------


def test_the_traceback_tail_ends_at_the_exception_and_keeps_the_authors_frames() -> None:
    tail = traceback_tail(TRACEBACK + "levrt runtime: 2 records written\n")
    assert len(tail) == 10
    assert tail[-1] == "RuntimeError: target unreachable: 10.0.0.99"
    assert tail[-3] == '  File "/orchestration/flow.py", line 5, in connect'
    assert traceback_tail(TRACEBACK, lines=3) == ['  File "/orchestration/flow.py", line 5, in connect',
                                                  '    raise RuntimeError(f"target unreachable: {ip}")',
                                                  "RuntimeError: target unreachable: 10.0.0.99"]
    assert traceback_tail("starting\nboom: no such host\n") == []
    assert traceback_tail("") == []


def test_a_traceback_whose_header_fell_out_of_the_logs_tail_starts_at_its_first_frame() -> None:
    cut = TRACEBACK.split("Traceback (most recent call last):\n", 1)[1]
    assert traceback_tail(cut, lines=20)[0].startswith('  File "/levrt/lib/')
    assert traceback_tail(cut)[-1] == "RuntimeError: target unreachable: 10.0.0.99"


def test_the_last_of_chained_tracebacks_is_the_one_shown() -> None:
    chained = ("Traceback (most recent call last):\n  File \"/orchestration/flow.py\", line 2, in a\n"
               "KeyError: 'port'\n\nDuring handling of the above exception, another exception occurred:\n\n"
               "Traceback (most recent call last):\n  File \"/orchestration/flow.py\", line 4, in b\n"
               "ValueError: no port\n")
    assert traceback_tail(chained) == ["Traceback (most recent call last):",
                                       '  File "/orchestration/flow.py", line 4, in b', "ValueError: no port"]


# -- a job on the fake cluster ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fake_job(kubelet: Callable[[FakeApiServer, str], None]) -> AsyncIterator[tuple[Engine, FakeApiServer]]:
    """A job whose Pods the test's ``kubelet(api, pod name)`` runs as soon as they are ungated."""
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    api.on_ungated = lambda pod: kubelet(api, pod["metadata"]["name"])
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=SETTINGS) as engine:
            yield engine, api


def events(api: FakeApiServer, pod: str, found: list[tuple[str, str, str]]) -> None:
    uid = api.get("pods", pod)["metadata"]["uid"]  # type: ignore[index]
    for n, (kind, reason, message) in enumerate(found):
        api.put({"kind": "Event", "metadata": {"name": f"{pod}.{n}"}, "involvedObject": {"name": pod, "uid": uid},
                 "type": kind, "reason": reason, "message": message})


def second_fails_with_a_traceback(api: FakeApiServer, pod: str) -> None:
    api.set_running(pod)
    if pod.endswith("-t1"):
        api.logs[pod] = TRACEBACK
        events(api, pod, NORMAL_EVENTS)
        api.set_terminated(pod, 1, message="RuntimeError: target unreachable: 10.0.0.99")
    else:
        api.set_terminated(pod, 0)


async def run_plain(main: Callable[[], Awaitable[Any]],
                    kubelet: Callable[[FakeApiServer, str], None]) -> tuple[list[str], BaseException | None]:
    out = io.StringIO()
    raised: BaseException | None = None
    try:
        async with fake_job(kubelet) as (engine, _api):
            await plain_progress(engine, main(), out=out)
    except BaseException as exc:  # the orchestration's own outcome, after the summary
        raised = exc
    return out.getvalue().splitlines(), raised


async def test_plain_output_names_each_task_and_ends_with_the_summary(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Concurrent() as c:
            c.start(scan("10.0.0.1"))
            c.start(scan("10.0.0.99"))

    caplog.set_level(logging.INFO, logger="lev")
    lines, raised = await run_plain(main, second_fails_with_a_traceback)
    assert isinstance(raised, ExceptionGroup)
    ended = [line for line in lines if line.startswith("1.")]
    assert any(line.startswith("1.0 test_run_output.scan(10.0.0.1): done in ") for line in ended), lines
    assert any(line.startswith("1.1 test_run_output.scan(10.0.0.99): failed in ")
               and line.endswith("s (RuntimeError: target unreachable: 10.0.0.99)") for line in ended), lines
    assert len(ended) == len(set(ended))  # no state printed twice
    summary = lines[len(ended):]
    assert summary[0].startswith("job 1: 2 tasks (1 done, 1 failed) in ")
    assert summary[1] == "  failed 1.1 test_run_output.scan(10.0.0.99): RuntimeError: target unreachable: 10.0.0.99"
    assert summary[2:] == ["    " + line for line in TRACEBACK.splitlines()[1:]]  # its last 10 lines
    assert not any("Normal" in line for line in lines)
    # The blocks' fractions, which started from 0 again at each block, are left out; nothing else is.
    assert not [m for m in caplog.messages if m.startswith("progress: ") and m[10:11].isdigit()]
    assert "job: 1" in caplog.messages


async def test_a_failed_entrys_message_quotes_no_normal_events() -> None:
    async def main() -> None:
        await scan("10.0.0.0")
        await scan("10.0.0.99")

    _lines, raised = await run_plain(main, second_fails_with_a_traceback)
    assert isinstance(raised, TaskFailed)
    assert str(raised) == "Task lev-j1-t1 failed: Error (RuntimeError: target unreachable: 10.0.0.99)"
    assert "RuntimeError: target unreachable" in raised.logs_tail


async def test_a_pod_that_never_ran_shows_its_warning_events_and_counts_as_failed() -> None:
    def cannot_pull(api: FakeApiServer, pod: str) -> None:
        events(api, pod, [("Normal", "Scheduled", "Successfully assigned"),
                          ("Normal", "Pulling", "Pulling image \"busybox:nope\""),
                          ("Warning", "Failed", "Failed to pull image \"busybox:nope\": not found")])
        api.set_waiting(pod, "ErrImagePull", "pull access denied for busybox:nope")

    async def main() -> None:
        await Cr("busybox:nope").start()

    lines, raised = await run_plain(main, cannot_pull)
    assert isinstance(raised, TaskFailed) and raised.reason == "ErrImagePull"
    assert "Warning Failed" in str(raised) and "Normal" not in str(raised)
    assert any(line.startswith("1.0 busybox:nope: failed in ") for line in lines), lines
    at = next(i for i, line in enumerate(lines) if line.startswith("job 1: "))
    assert lines[at].startswith("job 1: 1 task (1 failed) in ")
    assert lines[at + 1].startswith("  failed 1.0 busybox:nope: ErrImagePull (container main: pull access denied")
    assert lines[at + 2:] == ["    Events:",
                              '      Warning Failed: Failed to pull image "busybox:nope": not found']


def keeps_running(api: FakeApiServer, pod: str) -> None:
    api.set_running(pod)


async def test_after_ctrl_c_the_summary_counts_the_tasks_as_cancelled() -> None:
    out = io.StringIO()

    async def main() -> None:
        async with Concurrent() as c:
            for n in range(3):
                c.start(scan(f"10.0.0.{n}"))

    with pytest.raises(asyncio.CancelledError):
        async with fake_job(keeps_running) as (engine, api):
            running = asyncio.create_task(plain_progress(engine, main(), out=out))
            await api.until(lambda: out.getvalue().count(": running") == 3, timeout=5)
            running.cancel()  # what asyncio.run does on Ctrl-C (and levrt run on SIGTERM)
            await running
    assert api.names("pods") == []
    lines = out.getvalue().splitlines()
    assert sorted(line for line in lines if line.endswith(": cancelled")) == [
        f"1.{n} test_run_output.scan(10.0.0.{n}): cancelled" for n in range(3)]
    assert lines[-1].startswith("job 1: 3 tasks (3 cancelled) in ")


async def test_the_live_display_counts_them_as_cancelled_too(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        await scan("10.0.0.1")

    with pytest.raises(asyncio.CancelledError):
        async with fake_job(keeps_running) as (engine, api):
            running = asyncio.create_task(live_progress(engine, main()))
            await api.until(lambda: bool(engine.tasks) and engine.tasks[0].host is not None, timeout=5)
            running.cancel()
            await running
    err = capsys.readouterr().err
    assert "job 1: 1 task (1 cancelled) in " in err and "running" not in err.split("job 1: ", 1)[1]


async def test_a_task_never_awaited_is_counted_deleted_when_the_job_ends() -> None:
    async def main() -> None:
        await scan("10.0.0.1").start()  # left running: the session deletes its Pod

    lines, raised = await run_plain(main, keeps_running)
    assert raised is None
    assert lines[-2:-1] == ["1.0 test_run_output.scan(10.0.0.1): deleted"]
    assert lines[-1].startswith("job 1: 1 task (1 deleted) in ")


def test_the_fraction_filter_leaves_other_progress_lines() -> None:
    def record(message: str, name: str = "lev") -> logging.LogRecord:
        return logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)

    assert plain._is_fraction(record("progress: 0.25")) and plain._is_fraction(record("progress: 1"))
    assert not plain._is_fraction(record("progress: uploading words.txt (2.0 MiB)"))
    assert not plain._is_fraction(record("progress: 0.25", name="other"))
