"""``lev.set`` rides out a store outage: a real FerretDB (the test cluster's store, as a host
process) is stopped while an entry writes and started again on the same data.

Why: an outage longer than the driver's server selection used to fail the task, and an entry
that writes a counter every second must neither block for minutes nor lose a value. These tests
check the order and merging of buffered updates, ``lev.doc.get()`` during the outage, and that
what is still unwritten at the end is reported (exit ``EXIT_STORE``), never dropped silently.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

import levrt.payload
from levrt import context, lev
from levrt.runtime import EXIT_OK, EXIT_STORE, RuntimeConfig, StoreBinding, main
from tests.cluster import gotools


class Store:
    """One FerretDB process on localhost that can be stopped and started on the same data."""

    def __init__(self, state: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.state = state
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = gotools.build(gotools.tool("ferretdb")) / "ferretdb"

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.binary), f"--listen-addr=127.0.0.1:{self.port}", f"--state-dir={self.state}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("FerretDB did not start listening within 30 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.process = None

    def record(self, collection: str, job: int, task: int) -> dict[str, Any] | None:
        with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=10_000) as client:
            found: dict[str, Any] | None = client["levrt"][collection].find_one(
                {"_id": {"job": job, "task": task}}, {"_id": 0})
            return found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    running = Store(tmp_path / "state")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def config(store: Store, task: int, **extra: Any) -> RuntimeConfig:
    return RuntimeConfig(payload="/p", store_uri=store.uri, database="levrt", collection="outage", job=1,
                         task=task, **extra)


def test_updates_made_while_the_store_is_down_are_written_in_order_when_it_is_back(store: Store) -> None:
    binding = StoreBinding(config(store, task=0))
    previous = context.bind_task(binding)
    try:
        lev.set(before=1, report={"open": [22]})
        store.stop()
        for second in range(20):  # a counter and one field per second, as a scanner's progress
            lev.set({f"seen.s{second}": second}, count=second)
        lev.set(**{"report.closed": [23]})  # inside a field set before: a later, separate update
        lev.set(report={"open": [22, 80]})  # replaces the whole field again
        lev.set(after=True)
        assert "count" in binding.pending() and "after" in binding.pending()
        # Inside the entry, lev.doc.get() answers from what this Pod wrote and what waits.
        during = lev.doc.get()
        assert during is not None
        assert (during["before"], during["count"], during["report"], during["after"]) == (
            1, 19, {"open": [22, 80]}, True)
        assert during["seen"] == {f"s{i}": i for i in range(20)}

        store.start()
        assert binding.flush(120) is None
        assert binding.pending() == []
        stored = store.record("outage", 1, 0)
        assert stored == {"before": 1, "report": {"open": [22, 80]}, "count": 19,
                          "seen": {f"s{i}": i for i in range(20)}, "after": True}
        lev.set(later="direct")  # the outage is over: writes go straight to the store again
        assert binding.pending() == []
        assert (store.record("outage", 1, 0) or {})["later"] == "direct"
    finally:
        context.bind_task(previous)
        binding.close()


def test_a_refused_value_still_fails_the_set_that_gave_it(store: Store) -> None:
    binding = StoreBinding(config(store, task=1))
    previous = context.bind_task(binding)
    try:
        lev.set(ok=1)
        with pytest.raises(levrt.errors.StoreError, match="cannot be stored"):
            lev.set(bad=object())
        assert binding.pending() == [] and binding.flush(1) is None
    finally:
        context.bind_task(previous)
        binding.close()


def count_while_down(marker: str, n: int) -> None:
    # Pickled by value (tests is not in the runtime): the marker file tells the test the entry
    # has started writing, so it stops the store while the entry runs.
    import time as _time
    from pathlib import Path as _Path

    from levrt import lev as _lev

    _lev.set(started=True)
    _Path(marker).write_text("started")
    while _Path(marker).read_text() != "stopped":
        _time.sleep(0.05)
    for i in range(n):
        _lev.set(count=i, **{f"v{i}": i})


def run_main(tmp_path: Path, store: Store, task: int, wait: str, then: Any) -> tuple[int, str]:
    """Run ``count_while_down`` through ``main``; ``then(store)`` runs once the entry wrote first."""
    import threading

    marker = tmp_path / f"marker{task}"
    marker.write_text("")
    (tmp_path / "payload").write_bytes(levrt.payload.dumps(count_while_down, (str(marker), 5)))
    log = tmp_path / "termination-log"
    log.unlink(missing_ok=True)

    def disrupt() -> None:
        while marker.read_text() != "started":
            time.sleep(0.05)
        store.stop()
        marker.write_text("stopped")
        then(store)

    helper = threading.Thread(target=disrupt)
    helper.start()
    code = main([], {"LEVRT_PAYLOAD": str(tmp_path / "payload"), "LEVRT_JOB": "2", "LEVRT_TASK": str(task),
                     "LEVRT_STORE_URI": store.uri, "LEVRT_COLLECTION": "outage", "LEVRT_STORE_WAIT": wait,
                     "LEVRT_TERMINATION_LOG": str(log)})
    helper.join()
    return code, log.read_text() if log.exists() else ""


def test_the_run_waits_for_the_store_to_come_back_after_the_entry(tmp_path: Path, store: Store,
                                                                   isolated: None) -> None:
    def back_later(s: Store) -> None:
        time.sleep(8)  # longer than the driver's 5 s server selection: the end waits for it
        s.start()

    assert run_main(tmp_path, store, 3, "120", back_later) == (EXIT_OK, "")
    stored = store.record("outage", 2, 3)
    assert stored == {"started": True, "count": 4, **{f"v{i}": i for i in range(5)}}


def test_a_store_still_down_at_the_end_is_reported_not_dropped(tmp_path: Path, store: Store,
                                                               isolated: None) -> None:
    code, reason = run_main(tmp_path, store, 4, "2", lambda s: None)
    assert code == EXIT_STORE
    assert reason.startswith("StoreError: the store was unreachable")
    assert "LEVRT_STORE_WAIT" in reason and "'count'" in reason and "'v4'" in reason
    store.start()
    assert store.record("outage", 2, 4) == {"started": True}
