"""The runtime bundle and ``levrt.runtime``, in a busybox-only root filesystem (no cluster).

Why: entries run in images without Python. These tests chroot into a rootfs holding nothing
but busybox and the bundle at /levrt, exactly what a task container sees, and run real
payloads through ``python -m levrt.runtime``: versions refused before unpickling, failures
reported, SIGINT turned into KeyboardInterrupt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import levrt.payload
from levrt.runtime import REASON_LIMIT, RuntimeConfig, SetupError, short_reason
from tests.runtime.chroot import interrupt_entry, run_entry, run_python


def write_out(text: str) -> None:
    import sys as _sys

    with open("/tmp/out", "w") as fh:
        fh.write(f"{text} {_sys.prefix} {_sys.argv[1:]}")


def explode(message: str) -> None:
    raise ValueError(message)


def wait_for_interrupt(seconds: float) -> None:
    import time as _time

    open("/tmp/out", "w").write("waiting")
    try:
        _time.sleep(seconds)
    except KeyboardInterrupt:
        open("/tmp/out", "w").write("interrupted, partial results kept")


def ignore_nothing(seconds: float) -> None:
    import time as _time

    open("/tmp/out", "w").write("waiting")
    _time.sleep(seconds)


def leave_daemon_threads(count: int) -> None:
    import threading
    import time as _time

    def spin() -> None:
        while True:
            _time.sleep(0.001)

    for _ in range(count):
        threading.Thread(target=spin, daemon=True).start()
    _time.sleep(0.05)
    open("/tmp/out", "w").write("threads left running")


async def async_entry(text: str) -> None:
    import asyncio

    await asyncio.sleep(0)
    open("/tmp/out", "w").write(text)


def test_bundle_runs_in_a_rootfs_without_python(rootfs: Path) -> None:
    code = ("import sys, ssl, json, asyncio, sqlite3, levrt, cloudpickle, pymongo\n"
            "print(sys.prefix, sys.version_info[:2])")
    out = run_python(rootfs, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"/levrt {tuple(sys.version_info[:2])}"


def test_entry_runs_with_the_crs_cmd_as_argv(rootfs: Path) -> None:
    done = run_entry(rootfs, write_out, "ran", argv=("--flag", "value"))
    assert done.returncode == 0, done.stderr
    assert (rootfs / "tmp" / "out").read_text() == "ran /levrt ['--flag', 'value']"


def test_daemon_threads_alive_at_exit_do_not_abort_the_run(rootfs: Path) -> None:
    """Python ends such threads with pthread_exit, which needs libgcc_s (dlopened, not in ldd)."""
    for _ in range(3):
        done = run_entry(rootfs, leave_daemon_threads, 8)
        assert done.returncode == 0, done.stderr
        assert b"libgcc_s" not in done.stderr


def test_async_entry(rootfs: Path) -> None:
    done = run_entry(rootfs, async_entry, "async ran")
    assert done.returncode == 0, done.stderr
    assert (rootfs / "tmp" / "out").read_text() == "async ran"


def test_payload_for_another_python_is_refused_before_unpickling(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(levrt.payload, "python_version", lambda: "3.12")  # the header says 3.12
    done = run_entry(rootfs, write_out, "must not run")
    assert done.returncode == 3
    message = done.stderr.decode()
    assert "Python 3.12" in message and f"Python {sys.version_info[0]}.{sys.version_info[1]}" in message
    assert not (rootfs / "tmp" / "out").exists()
    assert "VersionMismatch" in (rootfs / "tmp" / "termination-log").read_text()


def test_entry_exception_exits_1_with_reason_and_traceback(rootfs: Path) -> None:
    done = run_entry(rootfs, explode, "the target refused")
    assert done.returncode == 1
    assert "Traceback" in done.stderr.decode() and "the target refused" in done.stderr.decode()
    assert (rootfs / "tmp" / "termination-log").read_text() == "ValueError: the target refused"


def test_sigint_becomes_keyboardinterrupt_inside_the_entry(rootfs: Path) -> None:
    done = interrupt_entry(rootfs, wait_for_interrupt, 30)
    assert done.returncode == 0, done.stderr
    assert (rootfs / "tmp" / "out").read_text() == "interrupted, partial results kept"


def test_uncaught_interrupt_exits_130(rootfs: Path) -> None:
    done = interrupt_entry(rootfs, ignore_nothing, 30)
    assert done.returncode == 130
    assert "KeyboardInterrupt" in (rootfs / "tmp" / "termination-log").read_text()


def test_lev_set_without_a_store_uri_fails_with_advice(rootfs: Path) -> None:
    from levrt import lev

    def store_it() -> None:
        lev.set(x=1)

    done = run_entry(rootfs, store_it)
    assert done.returncode == 1
    assert "LEVRT_STORE_URI" in (rootfs / "tmp" / "termination-log").read_text()


def test_short_reason_is_one_bounded_line() -> None:
    reason = short_reason(RuntimeError("line one\nline two " + "x" * 5000))
    assert "\n" not in reason
    assert reason.startswith("RuntimeError: line one line two")
    assert len(reason.encode()) <= REASON_LIMIT


def test_config_names_what_is_missing() -> None:
    with pytest.raises(SetupError, match="LEVRT_PAYLOAD, LEVRT_JOB"):
        RuntimeConfig.from_env({"LEVRT_TASK": "1"})
    config = RuntimeConfig.from_env({"LEVRT_PAYLOAD": "/p", "LEVRT_JOB": "4", "LEVRT_TASK": "2",
                                     "LEVRT_COLLECTION": "a|b@1"})
    assert (config.job, config.task, config.collection, config.database) == (4, 2, "a|b@1", "levrt")


STORED_APART = '''
import hashlib, os, threading
from levrt.runtime import fetch
from levrt.runtime.blobs import Bucket, decode_value, encode_value


class Coll:
    def __init__(self):
        self.docs = {}

    def find_one(self, query, projection=None):
        return self.docs.get(query["_id"])

    def insert_one(self, doc):
        self.docs[doc["_id"]] = doc

    def insert_many(self, docs, ordered=True):
        for doc in docs:
            self.insert_one(doc)

    def find(self, query, projection=None, batch_size=0):
        return [d for d in self.docs.values() if d.get("files_id") == query["files_id"]]


class Client(dict):
    def close(self):
        pass


db = {"levrt_files.files": Coll(), "levrt_files.chunks": Coll()}
read_end, write_end = os.pipe()
writer = threading.Thread(target=lambda: (os.write(write_end, b"x" * 3000001), os.close(write_end)))
writer.start()
sha, size = Bucket(db).put_file(os.fdopen(read_end, "rb"), filename="pipe", kind="artifact")
writer.join()
assert decode_value(encode_value({"a": b"1"})) == {"a": b"1"}
code = fetch.main(["/tmp", sha], {"LEVRT_STORE_URI": "mongodb://store/"}, connect=lambda uri: Client(levrt=db))
print(code, size, hashlib.sha256(open("/tmp/" + sha, "rb").read()).hexdigest() == sha)
'''


def test_storing_apart_and_the_levrt_files_fetch_run_on_the_bundle_alone(rootfs: Path) -> None:
    """What large results, artifacts (a pipe spooled to a temporary file) and the ``levrt-files``
    init container use of the standard library is in the trimmed bundle."""
    out = run_python(rootfs, "-c", STORED_APART)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "0 3000001 True" and "levrt-files: " in out.stdout
    usage = run_python(rootfs, "-m", "levrt.runtime.fetch", "/tmp", "not-a-digest")
    assert usage.returncode == 2 and "usage: python3 -m levrt.runtime.fetch" in usage.stderr


def print_then_fail(target: str) -> None:
    print(f"probing {target}")  # stdout: block-buffered without a terminal
    raise RuntimeError(f"target unreachable: {target}")


def test_a_failed_entrys_log_ends_with_its_traceback_after_what_it_printed(tmp_path: Path) -> None:
    """One log holds stdout and stderr as written: the entry's printed lines come first, its
    traceback last (``levrt logs --tail`` and the archive's last lines show why it failed)."""
    import subprocess

    payload = tmp_path / "payload"
    payload.write_bytes(levrt.payload.dumps(print_then_fail, ("10.0.0.99",)))
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "levrt.runtime"], cwd=repo, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "LEVRT_PAYLOAD": str(payload),
                               "LEVRT_JOB": "7", "LEVRT_TASK": "3",
                               "LEVRT_TERMINATION_LOG": str(tmp_path / "reason")})
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout
    assert lines.index("probing 10.0.0.99") < lines.index("Traceback (most recent call last):"), done.stdout
    assert lines[-1] == "RuntimeError: target unreachable: 10.0.0.99", done.stdout
