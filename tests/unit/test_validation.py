"""SPEC 6: every bad input raises a specific LevrtError subclass naming the offending value."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import pytest

import levrt
from levrt import Concurrent, Cr, Digest, annot, cli, lev
from levrt.checks import check_schema, check_service_name
from levrt.errors import (
    ArgvError,
    CrError,
    EntryError,
    EnvError,
    FileSpecError,
    LevrtError,
    LinkError,
    MetaError,
    NamespaceError,
    OutsideTaskError,
    PayloadError,
    PortError,
    SchemaError,
    ServiceError,
    SettingsError,
)
from levrt.settings import Settings
from tests.helpers import build

IMG = "levrt.local/busybox:1.36"


@levrt.remote
def ok_entry() -> None:
    pass


@levrt.remote
def needs_args(target: str) -> None:
    pass


def plain_function() -> None:
    pass


async def plain_async() -> None:
    pass


def big_entry() -> Cr:
    blob = b"x" * (600 * 1024)

    @levrt.remote
    def entry() -> int:
        return len(blob)

    return Cr(IMG, entry=entry())


MISSING = "/definitely/not/here/wordlist.txt"

# (id, action, expected error class, text the message must contain)
CASES: list[tuple[str, Callable[[], Any], type[LevrtError], str]] = [
    ("image-empty", lambda: Cr(""), CrError, "image=''"),
    ("image-space", lambda: Cr("busy box:1"), CrError, "busy box:1"),
    ("image-not-str", lambda: Cr(42), CrError, "image=42"),  # type: ignore[arg-type]
    ("schema-no-version", lambda: Cr(IMG, "talentsec/nmap"), SchemaError, "talentsec/nmap"),
    ("schema-no-namespace", lambda: Cr(IMG, "nmap@1.0"), SchemaError, "nmap@1.0"),
    ("schema-patch-version", lambda: Cr(IMG, "ts/issues@1.0.1"), SchemaError, "ts/issues@1.0.1"),
    ("schema-pipe", lambda: Cr(IMG, "a|b/c@1.0"), SchemaError, "a|b/c@1.0"),
    ("schema-not-str", lambda: Cr(IMG, 1.0), SchemaError, "1.0"),  # type: ignore[arg-type]
    ("host-not-bool", lambda: Cr(IMG, host="yes"), CrError, "'yes'"),  # type: ignore[arg-type]
    ("cmd-string", lambda: Cr(IMG, cmd="--verbose"), CrError, "--verbose"),
    ("cmd-int-item", lambda: Cr(IMG, cmd=["-p", 80]), CrError, "80"),  # type: ignore[list-item]
    ("env-no-equals", lambda: Cr(IMG, env=["DEBUG"]), EnvError, "'DEBUG'"),
    ("env-bad-name", lambda: Cr(IMG, env=["1X=2"]), EnvError, "1X=2"),
    ("env-reserved", lambda: Cr(IMG, env=["LEVRT_JOB=3"]), EnvError, "LEVRT_JOB"),
    ("env-duplicate", lambda: Cr(IMG, env=["A=1", "A=2"]), EnvError, "'A'"),
    ("env-string", lambda: Cr(IMG, env="A=1"), EnvError, "A=1"),
    ("file-relative", lambda: Cr(IMG, files={"etc/x.conf": b""}), FileSpecError, "etc/x.conf"),
    ("file-not-normalised", lambda: Cr(IMG, files={"/etc/../x": b""}), FileSpecError, "/etc/../x"),
    ("file-trailing-slash", lambda: Cr(IMG, files={"/etc/x/": b""}), FileSpecError, "/etc/x/"),
    ("file-root", lambda: Cr(IMG, files={"/": b""}), FileSpecError, "'/'"),
    (
        "file-reserved",
        lambda: Cr(IMG, files={"/levrt/bin/python3": b""}),
        FileSpecError,
        "/levrt/bin/python3",
    ),
    ("file-dir-conflict", lambda: Cr(IMG, files={"/a": b"", "/a/b": b""}), FileSpecError, "'/a/b'"),
    ("file-bad-type", lambda: Cr(IMG, files={"/x": 12345}), FileSpecError, "12345"),  # type: ignore[dict-item]
    ("file-missing-path", lambda: Cr(IMG, files={"/w.txt": pathlib.Path(MISSING)}), FileSpecError, MISSING),
    ("file-directory-path", lambda: Cr(IMG, files={"/w": pathlib.Path("/tmp")}), FileSpecError, "/tmp"),
    ("file-not-dict", lambda: Cr(IMG, files=["/x"]), FileSpecError, "['/x']"),  # type: ignore[arg-type]
    ("digest-bad", lambda: Digest("abc123"), FileSpecError, "abc123"),
    ("port-zero", lambda: Cr(IMG, ports=[0]), PortError, "port 0"),
    ("port-too-big", lambda: Cr(IMG, ports=[70000]), PortError, "70000"),
    ("port-str", lambda: Cr(IMG, ports=["80"]), PortError, "'80'"),  # type: ignore[list-item]
    ("port-bool", lambda: Cr(IMG, ports=[True]), PortError, "True"),
    ("port-single-int", lambda: Cr(IMG, ports=8000), PortError, "8000"),  # type: ignore[arg-type]
    ("port-duplicate", lambda: Cr(IMG, ports=[80, 80]), PortError, "80"),
    (
        "port-shared-with-service",
        lambda: Cr(IMG, ports=[9001], services={"redis": Cr("redis:7", ports=[9001])}),
        PortError,
        "9001",
    ),
    (
        "port-shared-between-services",
        lambda: Cr(IMG, services={"a": Cr("x:1", ports=[53]), "b": Cr("y:1", ports=[53])}),
        PortError,
        "'b'",
    ),
    ("service-name-upper", lambda: Cr(IMG, services={"Redis": Cr("redis:7")}), ServiceError, "'Redis'"),
    ("service-name-underscore", lambda: Cr(IMG, services={"my_db": Cr("pg:16")}), ServiceError, "'my_db'"),
    ("service-name-long", lambda: Cr(IMG, services={"a" * 64: Cr("x:1")}), ServiceError, "a" * 64),
    ("service-name-reserved", lambda: Cr(IMG, services={"main": Cr("x:1")}), ServiceError, "'main'"),
    ("service-not-cr", lambda: Cr(IMG, services={"redis": "redis:7"}), ServiceError, "redis:7"),  # type: ignore[dict-item]
    (
        "service-nested",
        lambda: Cr(IMG, services={"a": Cr("x:1", services={"b": Cr("y:1")})}),
        ServiceError,
        "'a'",
    ),
    ("service-host-mismatch", lambda: Cr(IMG, services={"a": Cr("x:1", host=True)}), ServiceError, "'a'"),
    ("service-schema", lambda: Cr(IMG, services={"a": Cr("x:1", "ts/a@1.0")}), ServiceError, "ts/a@1.0"),
    (
        "service-name-is-link",
        lambda: Cr(IMG, links={"db": "10.0.0.1"}, services={"db": Cr("x:1")}),
        ServiceError,
        "'db'",
    ),
    ("link-hostname", lambda: Cr(IMG, links={"proxy": "example.com"}), LinkError, "example.com"),
    ("link-none", lambda: Cr(IMG, links={"proxy": None}), LinkError, "'proxy'"),  # type: ignore[dict-item]
    ("link-bad-alias", lambda: Cr(IMG, links={"bad alias": "10.0.0.1"}), LinkError, "bad alias"),
    ("entry-plain-function", lambda: Cr(IMG, entry=plain_function), EntryError, "plain_function"),
    ("entry-plain-call-result", lambda: Cr(IMG, entry=plain_async()), EntryError, "plain_async"),
    ("entry-string", lambda: Cr(IMG, entry="main.py"), EntryError, "main.py"),
    ("entry-needs-args", lambda: Cr(IMG, entry=needs_args), EntryError, "needs_args"),
    ("entry-wrong-args", lambda: needs_args(), EntryError, "needs_args"),  # type: ignore[call-arg]
    ("entry-class", lambda: levrt.remote(int), EntryError, "int"),
    (
        "payload-too-large",
        lambda: build(big_entry()),
        PayloadError,
        "big_entry",
    ),
    ("namespace-pipe", lambda: lev / "a|b", NamespaceError, "a|b"),
    ("namespace-empty", lambda: lev / "", NamespaceError, "''"),
    ("lev-set-outside-task", lambda: lev.set(x=1), OutsideTaskError, "lev.set()"),
    ("cli-dict-value", lambda: cli(opts={"a": 1}), ArgvError, "{'a': 1}"),
    ("cli-bool-positional", lambda: cli(True), ArgvError, "True"),
    ("meta-bad-param", lambda: annot.meta(params=["ip"]), MetaError, "'ip'"),
    ("meta-bad-cat", lambda: annot.meta(cats=["recon"]), MetaError, "'recon'"),
    ("meta-no-parentheses", lambda: annot.meta(plain_function), MetaError, "plain_function"),  # type: ignore[call-overload]
    ("meta-ext-not-json", lambda: annot.meta(ext={"f": {1, 2}}), MetaError, "{1, 2}"),
    ("concurrent-limit-zero", lambda: Concurrent(limit=0), LevrtError, "limit=0"),
    ("settings-namespace", lambda: Settings(namespace="Levrt_NS"), SettingsError, "Levrt_NS"),
    ("settings-pull-policy", lambda: Settings(image_pull_policy="Sometimes"), SettingsError, "Sometimes"),
    ("settings-timeout", lambda: Settings(timeout=0), SettingsError, "timeout=0"),
    ("settings-env-json", lambda: Settings.from_env({"LEVRT_RESOURCES": "{oops"}), SettingsError, "{oops"),
]


def test_enough_distinct_cases() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30


@pytest.mark.parametrize(("action", "error", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(action: Callable[[], Any], error: type[LevrtError], needle: str) -> None:
    with pytest.raises(error) as info:
        action()
    assert isinstance(info.value, LevrtError)
    message = str(info.value)
    assert needle in message, message
    assert len(message) > 40, f"message too terse to say how to fix it: {message}"


def test_input_errors_are_also_builtin_kinds() -> None:
    assert issubclass(SchemaError, ValueError) and issubclass(EntryError, TypeError)


def test_good_inputs_pass(tmp_path: pathlib.Path) -> None:
    local = tmp_path / "x"
    local.write_text("x")
    cr = Cr(
        IMG,
        "talentsec/nmap@1.0",
        host=True,
        entry=ok_entry,
        cmd=("-v",),
        env=["A=1", "B=a=b", "C="],
        files={"/a/b": local, "/a/c": "text", "/d": bytearray(b"\0"), "/e": Digest("AB" * 32)},  # type: ignore[dict-item]
        links={"proxy": "10.0.0.1", "v6": "fd00::1"},
        ports=[80, 443],
        services={"redis": Cr("redis:7", ports=[6379], host=True), "db-1": Cr("pg:16")},
    )
    assert cr.entry is not None and cr.entry.args == ()
    assert cr.files["/e"] == "ab" * 32
    assert "talentsec/nmap@1.0" in repr(cr)


def test_the_public_checks_judge_a_value_as_cr_does() -> None:
    # levrt get SCHEMA uses check_schema: the same rule and message as Cr(schema=...).
    assert check_schema("talentsec/nmap@1.0") == "talentsec/nmap@1.0" and check_schema(None) is None
    for bad in ("nmap@1.0", "talentsec/nmap", "a/b@1.0\n"):
        with pytest.raises(SchemaError) as from_cr:
            Cr(IMG, bad)
        with pytest.raises(SchemaError, match=r"is not '<namespace>/<name>@<major>\.<minor>'") as direct:
            check_schema(bad)
        assert str(direct.value) == str(from_cr.value)
    assert check_service_name("redis") == "redis"
    with pytest.raises(ServiceError, match="Try 'my-db'"):
        check_service_name("My_DB")
