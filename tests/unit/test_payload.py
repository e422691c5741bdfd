"""Payload round trips: closures, args, kwargs, by-value helpers, async entries, version checks."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import threading
from typing import Any

import cloudpickle
import pytest

import levrt
from levrt import payload
from levrt.errors import EntryError, PayloadError, VersionMismatch
from levrt.remote import Remote, RemoteCall, as_call
from tests.unit import entry_helpers as h

REPO = pathlib.Path(__file__).resolve().parents[2]


def run(blob: bytes) -> object:
    func, args, kwargs = payload.loads_call(blob)
    result = func(*args, **kwargs)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return result


def test_remote_call_captures_without_running() -> None:
    call = h.greet("levrt", punctuation="?")
    assert isinstance(call, RemoteCall)
    assert call.args == ("levrt",) and call.kwargs == {"punctuation": "?"}
    assert call.name == "tests.unit.entry_helpers.greet"
    assert isinstance(h.greet, Remote) and h.greet.__name__ == "greet"


def test_remote_call_checks_the_signature() -> None:
    with pytest.raises(EntryError, match="greet"):
        h.greet("a", "b", "c")  # type: ignore[call-arg]


def test_round_trip_args_kwargs() -> None:
    assert run(payload.dumps_call(h.greet("levrt", punctuation="?"))) == "HELLO, LEVRT!?"


def test_round_trip_async_entry() -> None:
    call = h.agreet("x")
    assert call.is_async
    assert run(payload.dumps_call(call)) == "X!"


def test_round_trip_closure_keeps_captured_state() -> None:
    entry = h.make_closure("p")
    assert run(payload.dumps_call(entry(7))) == "p:7!:1"


def test_round_trip_local_closure() -> None:
    target = "example.com"
    issues = ["Some issues"]

    @levrt.remote
    def entry() -> dict[str, object]:
        return {"target": target, "issues": issues}

    assert run(payload.dumps_call(as_call(entry))) == {"target": "example.com", "issues": ["Some issues"]}


def test_header_content() -> None:
    blob = payload.dumps_call(h.greet("a"))
    assert blob.startswith(b"LEVRT-PAYLOAD 1\n")
    head = payload.read_header(blob)
    sources = head.pop("sources")
    assert head == {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "cloudpickle": cloudpickle.__version__,
        "levrt": levrt.__version__,
        "entry": "tests.unit.entry_helpers.greet",
    }
    # The source of the code pickled by value, nothing else (not levrt's, not the standard library's).
    assert sources == {h.__file__: pathlib.Path(h.__file__).read_text()}
    # The header line is plain JSON, readable without unpickling.
    assert json.loads(blob.split(b"\n")[1]) == {**head, "sources": sources}


def test_code_keeps_its_file_name_and_the_source_reaches_linecache(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = payload.dumps_call(h.greet("a"))
    monkeypatch.setattr(payload.linecache, "cache", {})
    func, _, _ = payload.loads_call(blob)
    assert func.__code__.co_filename == h.__file__
    assert payload.linecache.getline(h.__file__, func.__code__.co_firstlineno + 1).strip().startswith("def greet(")


def test_sources_never_push_a_payload_over_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(payload, "MAX_SOURCE_BYTES", 0)
        bare = len(payload.dumps_call(h.greet("a")))
    blob = payload.dumps_call(h.greet("a"), limit=bare + 100)  # room for the call, not for its source
    assert len(blob) == bare and "sources" not in payload.read_header(blob)
    assert run(blob) == "HELLO, A!."


def test_a_file_over_the_source_budget_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payload, "MAX_SOURCE_BYTES", 100)
    blob = payload.dumps_call(h.greet("a"))
    assert "sources" not in payload.read_header(blob)
    func, _, _ = payload.loads_call(blob)
    assert func.__code__.co_filename == h.__file__  # the name travels all the same


def _with_header(blob: bytes, **changes: str) -> bytes:
    _, head, body = blob.split(b"\n", 2)
    data = json.loads(head)
    data.update(changes)
    return b"LEVRT-PAYLOAD 1\n" + json.dumps(data).encode() + b"\n" + body


def test_version_mismatch_is_raised_before_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _with_header(payload.dumps_call(h.greet("a")), python="3.9")

    def boom(*_: object, **__: object) -> object:
        raise AssertionError("unpickled despite a version mismatch")

    monkeypatch.setattr(payload.pickle, "loads", boom)
    with pytest.raises(VersionMismatch) as info:
        payload.loads_call(blob, python="3.11")
    assert "3.9" in str(info.value) and "3.11" in str(info.value)


def test_cloudpickle_mismatch_names_both_sides() -> None:
    blob = _with_header(payload.dumps_call(h.greet("a")), cloudpickle="0.0.1")
    with pytest.raises(VersionMismatch) as info:
        payload.loads_call(blob, cloudpickle_version="9.9.9")
    assert "0.0.1" in str(info.value) and "9.9.9" in str(info.value)


def test_explicit_versions_that_match_load() -> None:
    blob = payload.dumps_call(h.greet("a"))
    head = payload.read_header(blob)
    _, args, _ = payload.loads_call(blob, python=head["python"], cloudpickle_version=head["cloudpickle"])
    assert args == ("a",)


def test_not_a_payload() -> None:
    with pytest.raises(PayloadError, match="Not a levrt payload"):
        payload.read_header(b"\x80\x05junk")
    with pytest.raises(VersionMismatch, match="format 7"):
        payload.read_header(b"LEVRT-PAYLOAD 7\n{}\n")


def test_unpicklable_argument_is_named() -> None:
    lock = threading.Lock()
    with pytest.raises(PayloadError) as info:
        payload.dumps_call(h.greet(lock))  # type: ignore[arg-type]
    assert "argument 0" in str(info.value) and "lock" in str(info.value)


def test_unpicklable_captured_variable_is_named() -> None:
    sock_like = threading.Lock()

    @levrt.remote
    def entry() -> None:
        print(sock_like)

    with pytest.raises(PayloadError, match="sock_like"):
        payload.dumps_call(entry())


def test_payload_size_limit() -> None:
    with pytest.raises(PayloadError) as info:
        payload.dumps_call(h.greet("x" * (payload.MAX_PAYLOAD_BYTES + 1)))
    assert str(payload.MAX_PAYLOAD_BYTES) in str(info.value)


def test_registration_is_undone() -> None:
    payload.dumps_call(h.greet("a"))
    assert "tests" not in cloudpickle.list_registry_pickle_by_value()


def test_user_registration_is_kept() -> None:
    cloudpickle.register_pickle_by_value(sys.modules["tests"])
    try:
        payload.dumps_call(h.greet("a"))
        assert "tests" in cloudpickle.list_registry_pickle_by_value()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules["tests"])


def test_module_level_helpers_travel_by_value(tmp_path: pathlib.Path) -> None:
    """Unpickled in an interpreter that can import levrt but not the tests package."""
    calls: dict[str, RemoteCall[Any]] = {
        "greet": h.greet("levrt", punctuation="?"),
        "agreet": h.agreet("async"),
        "closure": h.make_closure("c")(3),
        "ports": h.ports([h.Finding(22), h.Finding(443)]),
    }
    for name, call in calls.items():
        (tmp_path / name).write_bytes(payload.dumps_call(call))
    site = tmp_path / "site"
    site.mkdir()
    (site / "levrt").symlink_to(REPO / "levrt")
    script = (
        "import asyncio, sys\n"
        "from levrt import payload\n"
        "out = []\n"
        "for name in sys.argv[1:]:\n"
        "    f, a, k = payload.loads_call(open(name, 'rb').read())\n"
        "    r = f(*a, **k)\n"
        "    out.append(asyncio.run(r) if asyncio.iscoroutine(r) else r)\n"
        "assert 'tests' not in sys.modules, 'tests was imported'\n"
        "print(repr(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", script, *(str(tmp_path / n) for n in calls)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(["HELLO, LEVRT!?", "ASYNC!", "c:3!:1", [22, 443]])


def test_lev_pickles_by_reference() -> None:
    assert cloudpickle.loads(cloudpickle.dumps(levrt.lev)) is levrt.lev
