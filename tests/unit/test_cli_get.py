"""``levrt get`` and ``levrt schemas`` against the fake store, the table cells as pure functions,
the schema check's hints, and a target whose own import fails (``levrt check``/``levrt run``).

Why together: they are what a user meets reading results back — the order and count of what is
shown, a table a stored value cannot break, and every wrong name (a schema, a namespace, a
module) answered with the right exit status and a suggestion that itself works.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from levrt._cli import main
from levrt._cli.base import LONE_FILE_PREFIX
from levrt._cli.cells import cell_text, escape_controls, flatten
from levrt._clients.store import COUNTERS, TASKS, is_internal
from levrt._core.catalog import collection_of, split_collection
from levrt._stored import BUCKET, CHUNKS, FILES
from levrt.checks import check_schema
from levrt.errors import SchemaError
from tests.fakes import FakeApiServer, FakeMongo

STORE = "mongodb://127.0.0.1:30017/"
SCHEMA = "examples/tcpscan@1.0"
BANNER = "examples/banner@1.0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


def store(mongo: FakeMongo, collection: str, *ids: tuple[int, int], **fields: Any) -> None:
    """Records of tasks ``(job, task)`` in ``collection``, in the order given (as a store may return them)."""
    for job, task in ids:
        mongo["levrt"][collection].docs.append({"_id": {"job": job, "task": task}, "port": 100 * job + task, **fields})


def shown_ids(out: str) -> list[str]:
    return [f"{r['_id']['job']}.{r['_id']['task']}" for r in json.loads(out)]


# -- order and limit ------------------------------------------------------------------------------


def test_records_print_newest_job_first_and_tasks_in_order(mongo: FakeMongo,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, SCHEMA, (1, 0), (3, 2), (3, 5), (3, 1), (5, 0), (1, 1))
    assert main(["get", SCHEMA]) == 0
    out, err = out_err(capsys)
    assert shown_ids(out) == ["5.0", "3.1", "3.2", "3.5", "1.0", "1.1"]
    assert err == ""  # all shown: nothing to say


def test_limit_says_how_many_of_how_many_and_zero_shows_all(mongo: FakeMongo,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, SCHEMA, *[(job, 0) for job in range(1, 46)])
    assert main(["get", SCHEMA, "--limit", "3"]) == 0
    out, err = out_err(capsys)
    assert shown_ids(out) == ["45.0", "44.0", "43.0"]  # the newest, never the oldest
    assert err == f"3 of 45 records in {SCHEMA!r}, newest first (--limit 3; --limit 0 shows all).\n"
    assert main(["get", SCHEMA, "--limit", "3", "-o", "table"]) == 0
    out, err = out_err(capsys)
    assert len(out.splitlines()) == 4 and "3 of 45 records" in err
    assert main(["get", SCHEMA, "--limit", "0"]) == 0
    out, err = out_err(capsys)
    assert len(json.loads(out)) == 45 and err == ""
    assert main(["get", SCHEMA, "--limit", "45"]) == 0  # exactly all: counted, and nothing to say
    assert out_err(capsys)[1] == ""


def test_the_default_limit_is_said_too(mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, SCHEMA, *[(job, 0) for job in range(1, 151)])
    assert main(["get", SCHEMA]) == 0
    out, err = out_err(capsys)
    assert shown_ids(out)[0] == "150.0" and len(json.loads(out)) == 100
    assert err.startswith("100 of 150 records") and "--limit 100" in err


# -- --job latest ---------------------------------------------------------------------------------


def test_job_latest_is_the_newest_job_with_records_in_the_schema(mongo: FakeMongo,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, SCHEMA, (2, 0), (7, 1), (7, 0), (4, 0))
    store(mongo, BANNER, (9, 0))  # a newer job, in another schema
    assert main(["get", SCHEMA, "--job", "latest"]) == 0
    assert shown_ids(out_err(capsys)[0]) == ["7.0", "7.1"]
    assert main(["get", SCHEMA, "--job", "latest", "--task", "1"]) == 0
    assert shown_ids(out_err(capsys)[0]) == ["7.1"]


def test_job_latest_of_a_schema_without_job_records(mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    mongo["levrt"][SCHEMA].docs.append({"_id": "imported", "port": 1})  # written by something else
    assert main(["get", SCHEMA, "--job", "latest"]) == 0
    out, err = out_err(capsys)
    assert out == "[]\n"
    assert err == f"No records in {SCHEMA!r} belong to a job, so none is the latest (it holds 1 record).\n"


# -- empty answers: no match (0) or no such schema (1) --------------------------------------------


def test_a_filter_that_matches_nothing_says_so_and_succeeds(mongo: FakeMongo,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, SCHEMA, (1, 0), (2, 0))
    assert main(["get", SCHEMA, "--job", "8", "--task", "3"]) == 0
    assert out_err(capsys) == (
        "[]\n",
        f"No record of job 8 task 3 in {SCHEMA!r} (it holds 2 records; `levrt get {SCHEMA}` shows the newest).\n")


def test_an_unknown_schema_fails_and_names_those_that_exist(mongo: FakeMongo,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, SCHEMA, (1, 0))
    store(mongo, f"demo|{BANNER}", (2, 0))
    mongo["levrt"][COUNTERS].docs.append({"_id": "job", "seq": 2})  # levrt's own: never listed
    mongo["levrt"][TASKS].docs.append({"_id": "1.0", "job": 1, "task": 0})
    assert main(["get", "ux/dsn@1.0"]) == 1
    out, err = out_err(capsys)
    assert out == ""  # a script's `| jq` gets no empty list to mistake for "no records"
    assert err == ("levrt get: No schema 'ux/dsn@1.0' in the store. Schemas with records: "
                   f"demo|{BANNER} (--ns demo), {SCHEMA} (`levrt schemas` counts them).\n")


def test_a_typo_or_a_forgotten_ns_gets_the_command_that_works(mongo: FakeMongo,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, "ux/dns@1.0", (1, 0))
    store(mongo, f"demo|{BANNER}", (2, 0))
    assert main(["get", "ux/dsn@1.0"]) == 1
    assert "Did you mean `levrt get ux/dns@1.0`?" in out_err(capsys)[1]
    assert main(["get", BANNER]) == 1
    assert f"Did you mean `levrt get {BANNER} --ns demo`?" in out_err(capsys)[1]
    assert main(["get", BANNER, "--ns", "dmeo"]) == 1
    err = out_err(capsys)[1]
    assert f"No schema {BANNER!r} under --ns dmeo (collection 'dmeo|{BANNER}')" in err
    assert f"Did you mean `levrt get {BANNER} --ns demo`?" in err
    store(mongo, "red team|ux/ftp@1.0", (3, 0))
    assert main(["get", "ux/ftp@1.0"]) == 1
    assert "Did you mean `levrt get ux/ftp@1.0 --ns 'red team'`?" in out_err(capsys)[1]  # as a shell takes it
    # Every suggested command works.
    for suggested in ([BANNER, "--ns", "demo"], ["ux/dns@1.0"], ["ux/ftp@1.0", "--ns", "red team"]):
        assert main(["get", *suggested]) == 0
    capsys.readouterr()


def test_an_empty_store_says_it_holds_nothing_yet(mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", SCHEMA]) == 1
    assert out_err(capsys)[1] == f"levrt get: No schema {SCHEMA!r} in the store. It holds no records yet.\n"
    for own in ("jobs", "default"):  # names levrt writes itself: not a typo, just nothing yet
        assert main(["get", own]) == 0
        assert out_err(capsys) == ("[]\n", f"No records in {own!r} yet.\n")


def test_an_artifact_of_an_unknown_schema_or_of_the_latest_job(mongo: FakeMongo, tmp_path: pathlib.Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    store(mongo, SCHEMA, (2, 0), (6, 0), note="six")
    target = tmp_path / "note.txt"
    assert main(["get", "ux/dsn@1.0", "--job", "1", "--artifact", "note", "-o", str(target)]) == 1
    assert f"Schemas with records: {SCHEMA}" in out_err(capsys)[1]
    assert main(["get", SCHEMA, "--job", "latest", "--artifact", "port", "-o", str(target)]) == 0
    assert target.read_text() == "600"
    assert main(["get", SCHEMA, "--job", "9", "--artifact", "port", "-o", str(target)]) == 2
    assert "No record of job 9" in out_err(capsys)[1]


# -- tables ---------------------------------------------------------------------------------------


def test_the_jobs_own_records_show_the_job_alone(mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    mongo["levrt"]["jobs"].docs.append({"_id": {"job": 8}, "stage": "done"})
    assert main(["get", "jobs", "--job", "8", "-o", "table"]) == 0
    assert out_err(capsys)[0].splitlines() == ["JOB   stage", "8     done"]


def test_tables_flatten_nested_fields_join_lists_and_escape_control_characters(
        mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    docs = mongo["levrt"][SCHEMA].docs
    docs.append({"_id": {"job": 2, "task": 0}, "host": {"ip": "10.0.0.1", "os": {"name": "linux"}},
                 "ports": [22, 80], "banner": "SSH\tx\x1b[31mred\nnext",
                 "_artifacts": [{"name": "out.xml", "sha256": "0" * 64, "size": 2048}]})
    docs.append({"_id": {"job": 1, "task": 0}, "host": {"ip": "10.0.0.2"}, "ports": []})
    assert main(["get", SCHEMA, "-o", "table"]) == 0
    assert out_err(capsys)[0].splitlines() == [
        "TASK   _artifacts          banner                    host.ip    host.os.name   ports",
        "2.0    out.xml (2.0 KiB)   SSH\\tx\\x1b[31mred\\nnext   10.0.0.1   linux          22, 80",
        "1.0    -                   -                         10.0.0.2   -              []",
    ]


def test_a_column_name_cannot_break_the_table_either(mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    mongo["levrt"][SCHEMA].docs.append({"_id": {"job": 1, "task": 0}, "a\tb": {"c\nd": 1}})
    assert main(["get", SCHEMA, "-o", "table"]) == 0
    assert out_err(capsys)[0].splitlines() == ["TASK   a\\tb.c\\nd", "1.0    1"]


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": {}, "f": [{"g": 1}]}) == {
        "a.b": 1, "a.c.d": None, "e": {}, "f": [{"g": 1}]}


@pytest.mark.parametrize(("value", "cell"), [
    ("text", "text"),
    (None, "null"),
    (True, "true"),
    (3.5, "3.5"),
    (b"\x00\x01", "<2 bytes>"),
    ([1, "a b", None], "1, a b, null"),
    ([{"ip": "10.0.0.1"}, [1, 2]], '{"ip":"10.0.0.1"}, [1,2]'),
    ([], "[]"),
    ({}, "{}"),
    ("x" * 50, "x" * 37 + "..."),
    ("tab\there", "tab\\there"),
    ("\u202eevil\u2028", "\\u202eevil\\u2028"),
    (["a\nb"], "a\\nb"),
])
def test_cell_text(value: Any, cell: str) -> None:
    assert cell_text(value) == cell


UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@given(st.text())
def test_an_escaped_text_holds_no_control_character_and_a_safe_text_is_unchanged(text: str) -> None:
    escaped = escape_controls(text)
    assert not any(unicodedata.category(char) in UNSAFE for char in escaped)
    if not any(unicodedata.category(char) in UNSAFE for char in text):
        assert escaped == text


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)))
def test_every_cell_is_one_bounded_safe_line(value: Any) -> None:
    cell = cell_text(value)
    assert len(cell) <= 40 and not any(unicodedata.category(char) in UNSAFE for char in cell)


# -- levrt schemas --------------------------------------------------------------------------------


@pytest.fixture
def stocked(mongo: FakeMongo) -> Iterator[FakeMongo]:
    store(mongo, SCHEMA, (1, 0), (1, 1), (2, 0))
    store(mongo, f"demo|{BANNER}", (3, 0))
    store(mongo, f"a|b|{BANNER}", (4, 0))
    mongo["levrt"]["jobs"].docs.append({"_id": {"job": 1}})
    for internal in (COUNTERS, TASKS, FILES, CHUNKS):
        mongo["levrt"][internal].docs.append({"_id": "x"})
    yield mongo


def test_schemas_lists_collections_with_their_namespaces_and_counts(stocked: FakeMongo,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas"]) == 0
    assert out_err(capsys) == ("\n".join([
        "SCHEMA                 NS     RECORDS",
        "examples/banner@1.0    a/b    1",
        "examples/banner@1.0    demo   1",
        "examples/tcpscan@1.0   -      3",
        "jobs                   -      1",
    ]) + "\n", "")
    assert main(["schemas", "-o", "json"]) == 0
    assert json.loads(out_err(capsys)[0]) == [
        {"schema": BANNER, "ns": "a/b", "collection": f"a|b|{BANNER}", "records": 1},
        {"schema": BANNER, "ns": "demo", "collection": f"demo|{BANNER}", "records": 1},
        {"schema": SCHEMA, "ns": None, "collection": SCHEMA, "records": 3},
        {"schema": "jobs", "ns": None, "collection": "jobs", "records": 1},
    ]


def test_schemas_of_an_empty_store_and_other_programs_collections(mongo: FakeMongo,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas"]) == 0
    assert out_err(capsys) == (
        "", "No records in the store yet: a task started with Cr(..., schema=...) writes the first.\n")
    assert main(["schemas", "-o", "json"]) == 0
    assert json.loads(out_err(capsys)[0]) == []
    mongo["levrt"]["users\x1b"].docs.append({"_id": 1})
    assert main(["schemas"]) == 0
    assert "Not listed: 1 collection(s) that levrt did not name: 'users\\x1b'." in out_err(capsys)[1]


def test_levrts_own_collections_are_named_apart() -> None:
    for internal in (COUNTERS, TASKS, BUCKET, FILES, CHUNKS, "system.views"):
        assert is_internal(internal) and split_collection(internal) is None
    for users in ("jobs", "default", SCHEMA, f"demo|{BANNER}"):
        assert not is_internal(users)


@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True), max_size=3),
       st.sampled_from([SCHEMA, "default", "jobs"]))
def test_a_collection_name_reads_back_as_the_get_arguments_that_read_it(parts: list[str], schema: str) -> None:
    ns = "/".join(parts) or None
    found = split_collection(collection_of(schema, ns))
    assert found is not None and (found.schema, found.ns) == (schema, ns)


# -- schema hints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "hint"), [
    ("ux/dns1.0", "Did you mean 'ux/dns@1.0'?"),
    ("ux dns@1.0", "Did you mean 'ux/dns@1.0'?"),
    ("ts/issues", "Did you forget the version, e.g. 'ts/issues@1.0'?"),
    ("nmap@1.0", "Did you forget the namespace, e.g. 'myteam/nmap@1.0'?"),
    ("a/b@v2", "Did you mean 'a/b@2.0'?"),
    ("a/b/c@1.0", "Did you mean 'a/b-c@1.0'?"),
])
def test_schema_hints(written: str, hint: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_schema(written)
    assert str(info.value).endswith(hint)


def test_a_long_schema_is_said_to_be_long() -> None:
    with pytest.raises(SchemaError, match="is 126 characters; a schema is at most 120"):
        check_schema("a" * 120 + "/b@1.0")


SUGGESTION = re.compile(r"(?:e\.g\.|Did you mean) '([^']*)'\?\Z")


@given(st.one_of(st.text(max_size=40), st.from_regex(r"[a-z /:@.v0-9_-]{1,30}", fullmatch=True)))
def test_every_suggested_schema_is_itself_accepted(written: str) -> None:
    try:
        check_schema(written)
    except SchemaError as exc:
        suggested = SUGGESTION.search(str(exc))
        if suggested is not None:
            assert check_schema(suggested[1]) == suggested[1]


# -- a target whose own import fails ----------------------------------------------------------------


@pytest.fixture
def tool(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    """A tool package ``lev/demo/pwntool`` under ``tmp_path`` (the current directory), and a lone file."""
    package = tmp_path / "lev" / "demo" / "pwntool"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package.parent / "pwnpkg").mkdir()
    (package.parent / "pwnpkg" / "__init__.py").write_text("from pwn import *  # noqa\n")
    (package / "exploit.py").write_text("import os\nfrom pwn import remote\n")
    (package / "helpers.py").write_text("from . import nothere\n")
    (package / "lost.py").write_text("import lev.demo.pwntool.gone\n")
    (tmp_path / "lone.py").write_text("import levrt_no_such_dependency.sub\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_module leaves a package's root on it
    before = set(sys.modules)
    yield package
    for name in set(sys.modules) - before:  # the next test imports its own lev.* afresh
        if name.partition(".")[0] == "lev" or name.startswith(LONE_FILE_PREFIX):
            del sys.modules[name]


@pytest.mark.parametrize(("target", "site"), [
    ("lev/demo/pwntool/exploit.py", "lev/demo/pwntool/exploit.py:2"),
    ("lev.demo.pwntool.exploit", "lev/demo/pwntool/exploit.py:2"),
    ("lev/demo/pwnpkg", "lev/demo/pwnpkg/__init__.py:1"),
])
def test_check_names_the_missing_dependency(tool: pathlib.Path, target: str, site: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", target]) == 1
    assert out_err(capsys) == ("", (
        f"levrt check: {target} needs the module 'pwn' (imported at {site}), which is not "
        "installed here: install the package that provides it (pip install pwn, if that is its name), or, when "
        "only the task's image needs it, import it inside the @levrt.remote entry that uses it.\n"))


def test_check_of_a_lone_file_and_the_packages_own_mistakes(tool: pathlib.Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "lone.py"]) == 1
    assert "lone.py needs the module 'levrt_no_such_dependency' (imported at lone.py:1)" in out_err(capsys)[1]
    assert main(["check", "lev/demo/pwntool/lost.py"]) == 1
    assert out_err(capsys)[1] == ("levrt check: lev/demo/pwntool/lost.py imports 'lev.demo.pwntool.gone' (imported "
                                  "at lev/demo/pwntool/lost.py:1), which its own package does not have.\n")
    assert main(["check", "lev/demo/pwntool/helpers.py"]) == 1
    err = out_err(capsys)[1]
    assert err.startswith("levrt check: lev/demo/pwntool/helpers.py: an import failed at "
                          "lev/demo/pwntool/helpers.py:1: cannot import name 'nothere'")
    assert "unexpected" not in err and "please report it" not in err


def test_run_names_the_missing_dependency_before_opening_a_job(tool: pathlib.Path, api: FakeApiServer,
                                                               mongo: FakeMongo,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "lev/demo/pwntool/exploit.py"]) == 1
    assert "needs the module 'pwn'" in out_err(capsys)[1]
    assert api.requests == [] and mongo.uris == []
