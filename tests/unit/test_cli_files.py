"""``levrt put`` and the large-data side of ``levrt get``: Digests printed like ``sha256sum``,
fields stored apart shown as a placeholder with the command that fetches them, and
``--artifact NAME -o FILE`` writing an artifact or such a field, streamed."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import pytest

from levrt._cli import main
from levrt.runtime import RuntimeConfig, StoreBinding
from tests.fakes import FakeMongo

STORE = "mongodb://127.0.0.1:30017/"
SCHEMA = "ts/scan@1.0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)


def task(mongo: FakeMongo, job: int, number: int) -> StoreBinding:
    """The runtime's binding of task ``job.number`` (what an entry's ``lev`` writes through)."""
    config = RuntimeConfig(payload="/p", store_uri=STORE, database="levrt", collection=SCHEMA, job=job, task=number)
    return StoreBinding(config, connect=mongo.sync_client)


def test_put_prints_digests_like_sha256sum_and_skips_stored_content(
        mongo: FakeMongo, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = tmp_path / "words.txt"
    words.write_bytes(os.urandom(9 * 1024 * 1024 + 1))
    small = tmp_path / "users.txt"
    small.write_text("admin\n")
    assert main(["put", str(words), str(small)]) == 0
    out, err = capsys.readouterr()
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in (words, small)]
    assert out.splitlines() == [f"{digests[0]}  {words}", f"{digests[1]}  {small}"]
    assert "progress: uploading words.txt (9.0 MiB)" in err and "progress: words.txt 44% (4.0 MiB of 9.0 MiB)" in err
    assert main(["put", str(words)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(hashlib.sha256(words.read_bytes()).hexdigest()) and "words.txt: already stored" in err


def test_put_checks_every_file_before_sending_anything(mongo: FakeMongo, tmp_path: pathlib.Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.txt"
    good.write_text("x")
    assert main(["put", str(good), str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt' is not a file" in capsys.readouterr().err
    assert mongo.uris == []


def test_get_shows_fields_stored_apart_and_fetches_them_and_artifacts(
        mongo: FakeMongo, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = os.urandom(2 * 1024 * 1024)
    xml = tmp_path / "out.xml"
    xml.write_bytes(b"<nmaprun/>" * 300_000)
    binding = task(mongo, 3, 0)
    binding.set({"target": "10.0.0.1", "report": report, "hosts": [{"ip": "10.0.0.1"}] * 100_000})
    binding.put("report.xml", xml)
    assert main(["get", SCHEMA, "--job", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)[0]
    assert shown["target"] == "10.0.0.1" and shown["_artifacts"][0]["name"] == "report.xml"
    assert shown["report"] == (f"<stored apart: 2.0 MiB — levrt get {SCHEMA} --job 3 --task 0 --artifact report "
                               "-o FILE>")
    assert main(["get", SCHEMA, "--job", "3", "--artifact", "report.xml", "-o", str(tmp_path / "a.xml")]) == 0
    assert (tmp_path / "a.xml").read_bytes() == xml.read_bytes()
    assert "wrote 2.9 MiB to" in capsys.readouterr().err
    assert main(["get", SCHEMA, "--job", "3", "--task", "0", "--artifact", "report", "-o", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r").read_bytes() == report  # bytes as they are
    assert main(["get", SCHEMA, "--job", "3", "--artifact", "hosts", "-o", str(tmp_path / "h.json")]) == 0
    assert json.loads((tmp_path / "h.json").read_text()) == [{"ip": "10.0.0.1"}] * 100_000  # the rest as JSON


def test_get_artifact_usage_mistakes(mongo: FakeMongo, tmp_path: pathlib.Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    task(mongo, 4, 0).set(a=1)
    task(mongo, 4, 1).set(a=2)
    assert main(["get", SCHEMA, "--artifact", "x", "-o", "f"]) == 2
    assert "needs --job" in capsys.readouterr().err
    assert main(["get", SCHEMA, "--job", "4", "--task", "0", "--artifact", "x"]) == 2
    assert "needs -o FILE" in capsys.readouterr().err
    assert main(["get", SCHEMA, "--job", "4", "--artifact", "x", "-o", str(tmp_path / "f")]) == 2
    assert "several records" in capsys.readouterr().err
    assert main(["get", SCHEMA, "--job", "4", "--task", "1", "--artifact", "x", "-o", str(tmp_path / "f")]) == 2
    assert "'x' is neither an artifact nor a field of that record (it has: a)" in capsys.readouterr().err
    assert main(["get", SCHEMA, "-o", "yaml"]) == 2
    assert main(["get", SCHEMA, "--task", "1"]) == 2
    assert main(["get", SCHEMA, "--job", "4", "--task", "1"]) == 0
    assert [r["a"] for r in json.loads(capsys.readouterr().out)] == [2]


def test_get_nested_field_stored_apart(mongo: FakeMongo, tmp_path: pathlib.Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    task(mongo, 5, 0).set({"hosts.web": "x" * (2 * 1024 * 1024)})
    assert main(["get", SCHEMA, "--job", "5"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hosts"]["web"].startswith(
        f"<stored apart: 2.0 MiB — levrt get {SCHEMA} --job 5 --task 0 --artifact hosts.web -o FILE>")
    assert main(["get", SCHEMA, "--job", "5", "--artifact", "hosts.web", "-o", str(tmp_path / "w.txt")]) == 0
    assert (tmp_path / "w.txt").read_text() == "x" * (2 * 1024 * 1024)
