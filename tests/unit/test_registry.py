"""The tool registry (issue 23, item 1): ``levrt publish`` checks and stores a package tree with its
metadata, ``levrt tools`` finds it by text, tag and category, ``levrt unpublish`` removes it; the
archive is the same bytes for the same tree and is refused when it does not match its record.

Against the fake apiserver (a SelfSubjectReview answers ``tester``) and the fake store; on the
real cluster in ``tests/e2e/test_published_tools.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from levrt._cli import main
from levrt._core.registry import REGISTRY_DATABASE, TOOLS
from levrt._shapes.registry import pack, parse_tool, search_terms, unpack
from tests.fakes import FakeApiServer, FakeMongo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_imports(laptop_env: None) -> Iterator[None]:
    before, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - before:  # each test imports its own copy of the packages
        if name == "lev" or name.startswith("lev."):
            del sys.modules[name]
    sys.path[:] = path


def tools(mongo: FakeMongo) -> list[dict[str, object]]:
    return sorted(mongo[REGISTRY_DATABASE][TOOLS].docs, key=lambda d: str(d["_id"]))


def a_tool(tmp_path: Path, *, version: str | None = None) -> Path:
    """A copy of the banner demo package as lev/acme/probe, with ``__version__`` if given."""
    folder = tmp_path / "lev" / "acme" / "probe"
    shutil.copytree(REPO / "examples" / "lev" / "demo" / "banner", folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = folder / "__init__.py"
    if version:
        init.write_text(init.read_text() + f"\n__version__ = {version!r}\n")
    return folder


# -- the archive ----------------------------------------------------------------------------------


def test_the_same_tree_packs_to_the_same_bytes_and_caches_are_left_out(tmp_path: Path) -> None:
    folder = a_tool(tmp_path)
    tool = parse_tool("acme/probe")
    first = pack(folder, tool)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "grab.cpython-311.pyc").write_bytes(b"compiled")
    os.utime(folder / "grab.py", (1, 1))
    assert pack(folder, tool) == first
    (folder / "grab.py").write_text((folder / "grab.py").read_text() + "\n# changed\n")
    assert pack(folder, tool) != first


def test_an_archive_unpacks_only_when_it_matches_its_sha256(tmp_path: Path) -> None:
    archive = pack(a_tool(tmp_path), parse_tool("acme/probe"))
    sha = hashlib.sha256(archive).hexdigest()
    dest = tmp_path / "site"
    unpack(archive, dest, sha256=sha)
    assert (dest / "lev" / "acme" / "probe" / "grab.py").is_file()
    tampered = archive[:-1] + bytes([archive[-1] ^ 1])
    with pytest.raises(ValueError, match="changed after it was published; nothing of it is run"):
        unpack(tampered, tmp_path / "other", sha256=sha)
    assert not (tmp_path / "other").exists()


def test_the_registry_writers_uri_is_moved_to_the_address_this_machine_reaches() -> None:
    from levrt._core.registry import rehosted

    secret = "mongodb://w:p%40ss@levrt-store.levrt.svc:27017/levrt_registry?authSource=levrt_registry"
    assert rehosted(secret, "mongodb://192.0.2.2:30017/") == (
        "mongodb://w:p%40ss@192.0.2.2:30017/levrt_registry?authSource=levrt_registry")
    assert rehosted("mongodb://levrt-store:27017/", "mongodb://app:x@10.0.0.1:30017/levrt") == "mongodb://10.0.0.1:30017/"


def test_tool_names_are_checked() -> None:
    assert str(parse_tool("demo/portscan@1.2")) == "demo/portscan@1.2"
    assert parse_tool("demo/portscan").package == "lev.demo.portscan"
    for bad in ("portscan", "Demo/portscan", "demo/port scan", "demo/portscan@", "demo/portscan@1 2", "a/b/c"):
        with pytest.raises(ValueError, match=r"tool name|version"):
            parse_tool(bad)


def test_tactics_are_found_by_id_and_by_name() -> None:
    terms = search_terms({"desc": "TCP connect scan", "cats": {"Attck": ["TA0007"], "BlackArch": ["scanner"]},
                          "tags": ["Demo"], "exports": [{"name": "tcp", "desc": "scan ports"}]})
    assert {"tcp", "connect", "ta0007", "discovery", "scanner", "demo", "ports"} <= set(terms)


# -- publish, tools, unpublish ------------------------------------------------------------------------


def test_a_package_is_published_found_and_unpublished(api: FakeApiServer, mongo: FakeMongo,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    target = str(REPO / "examples" / "lev" / "demo" / "portscan" / "flows.py")  # a file in it names the package
    assert main(["publish", target]) == 0
    [record] = tools(mongo)
    archive = pack(REPO / "examples" / "lev" / "demo" / "portscan", parse_tool("demo/portscan"))
    sha = hashlib.sha256(archive).hexdigest()
    assert (record["name"], record["version"], record["sha256"], record["publisher"]) == (
        "demo/portscan", sha[:12], sha, "tester")
    assert record["tags"] == ["demo", "http", "tcp"] and {"ta0007", "discovery", "scanner"} <= set(record["cats"])
    assert capsys.readouterr().out.startswith(f"published demo/portscan@{sha[:12]} (sha256 {sha[:12]}, ")

    assert main(["publish", str(REPO / "examples" / "lev" / "demo" / "portscan")]) == 0
    assert "is published already with this content (by tester); nothing changed" in capsys.readouterr().out
    assert len(tools(mongo)) == 1
    assert main(["publish", str(REPO / "examples" / "lev" / "demo" / "banner")]) == 0
    capsys.readouterr()

    def found(*argv: str) -> list[str]:
        assert main(["tools", *argv, "-o", "json"]) == 0
        return [row["name"] for row in json.loads(capsys.readouterr().out)]

    assert found() == ["demo/banner", "demo/portscan"]
    assert found("http probe") == ["demo/portscan"]  # every word must match
    assert found("--tag", "TCP") == ["demo/portscan"]
    assert found("--cat", "TA0007") == ["demo/banner", "demo/portscan"]
    assert found("--cat", "discovery") == ["demo/banner", "demo/portscan"]
    assert found("--cat", "fingerprint") == ["demo/banner"]
    assert main(["tools", "nothing-like-it"]) == 0
    assert "No published tools matching 'nothing-like-it'" in capsys.readouterr().err

    banner_version = next(r["version"] for r in tools(mongo) if r["name"] == "demo/banner")
    assert main(["unpublish", "demo/banner"]) == 0
    assert capsys.readouterr().out == f"unpublished demo/banner@{banner_version}\n"
    assert [r["name"] for r in tools(mongo)] == ["demo/portscan"]
    assert main(["unpublish", "demo/banner"]) == 2
    assert "No tool demo/banner is published" in capsys.readouterr().err


def test_a_version_names_one_tree_for_good(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = a_tool(tmp_path, version="1.0")
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["publish", str(folder)]) == 0
        assert [r["_id"] for r in tools(mongo)] == ["acme/probe@1.0"]
        (folder / "grab.py").write_text((folder / "grab.py").read_text() + "\n# changed\n")
        for name in [n for n in sys.modules if n == "lev" or n.startswith("lev.")]:
            del sys.modules[name]
        assert main(["publish", str(folder)]) == 1
        assert "acme/probe@1.0 is published already with other content" in capsys.readouterr().err
        assert len(tools(mongo)) == 1
        assert main(["unpublish", "acme/probe@2.0"]) == 2
        assert "acme/probe@2.0 is not published; its versions are: 1.0." in capsys.readouterr().err
    finally:
        sys.path.remove(str(tmp_path))


def test_what_is_not_a_tool_package_is_refused_and_nothing_is_stored(api: FakeApiServer, mongo: FakeMongo,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", str(REPO / "examples" / "tcpscan.py")]) == 2
    assert "is not in a tool package: a published tool lives in a folder lev/NAMESPACE/TOOL/" in capsys.readouterr().err
    assert tools(mongo) == []
    assert main(["unpublish", "Not A Name"]) == 2
    assert "is not a tool name" in capsys.readouterr().err


# -- running a published tool by name ----------------------------------------------------------------


def created(api: FakeApiServer) -> list[str]:
    """What the client asked the apiserver to create, other than reviews of who it is."""
    return [r.path for r in api.requests if r.method == "POST" and "review" not in r.path]


def publish_demos() -> None:
    """Both demo tools: portscan's package imports banner."""
    for tool in ("portscan", "banner"):
        assert main(["publish", str(REPO / "examples" / "lev" / "demo" / tool)]) == 0


def published(mongo: FakeMongo, name: str) -> dict[str, object]:
    return next(r for r in tools(mongo) if r["name"] == name)


def test_the_orchestration_pod_of_a_published_tool_ships_nothing_and_names_its_archive() -> None:
    from levrt._shapes.orchestrator import orchestrator_objects
    from levrt.settings import Settings

    objects = orchestrator_objects(sources={}, entry="demo/portscan@1.0", func="tcp", args=["target=10.0.0.1"],
                                   settings=Settings(runtime_image="levrt.local/runtime:t"), run_id="abc",
                                   published="f" * 64)
    assert objects.owned == []
    container = objects.pod["spec"]["containers"][0]
    assert container["command"][-5:] == ["--published", "f" * 64, "demo/portscan@1.0:tcp", "--", "target=10.0.0.1"]
    assert "volumeMounts" not in container and "volumes" not in objects.pod["spec"]


def test_a_published_mode_runs_from_the_registrys_copy_and_its_job_says_which(
        api: FakeApiServer, mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    """What the orchestration Pod's `levrt run --published SHA` does, here against the fakes."""
    publish_demos()
    record = published(mongo, "demo/portscan")
    api.autorun(exit_code=0)
    assert main(["run", "--no-progress", "--published", str(record["sha256"]), "demo/portscan:tcp",
                 "target=10.0.0.1", "ports=22"]) == 0
    [job] = mongo["levrt_journal"]["levrt_jobs"].docs
    assert job["what"] == {"target": f"demo/portscan@{record['version']}:tcp", "args": ["target=10.0.0.1", "ports=22"],
                           "tool": "demo/portscan", "version": record["version"], "sha256": record["sha256"],
                           "uses": [f"demo/banner@{published(mongo, 'demo/banner')['version']}"]}
    assert job["state"] == "succeeded"
    assert [r.path for r in api.requests if r.method == "POST" and r.path.endswith("/pods")] == [
        "/api/v1/namespaces/levrt/pods"]  # the mode's one task


def test_a_wrong_call_of_a_published_tool_is_refused_before_anything_is_created(
        api: FakeApiServer, mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    publish_demos()
    capsys.readouterr()
    assert main(["run", "demo/portscan:nosuch"]) == 2
    assert "has no mode or workflow 'nosuch'; it has: scan.tcp, scan.paths, sweep" in capsys.readouterr().err
    assert main(["run", "demo/portscan:tcp", "bogus=1"]) == 2
    assert "usage: levrt run demo/portscan@" in capsys.readouterr().err
    assert main(["run", "demo/nothing:x"]) == 2
    assert "No tool demo/nothing is published" in capsys.readouterr().err
    assert main(["run", "demo/portscan@9.9:tcp", "target=x"]) == 2
    assert "demo/portscan@9.9 is not published; its versions are: " in capsys.readouterr().err
    assert created(api) == [] and mongo["levrt_journal"]["levrt_jobs"].docs == []


def test_an_archive_that_is_not_the_one_submitted_or_published_is_never_run(
        api: FakeApiServer, mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    publish_demos()
    record = published(mongo, "demo/portscan")
    capsys.readouterr()
    assert main(["run", "--published", "0" * 64, "demo/portscan:tcp", "target=10.0.0.1"]) == 1
    assert "not the " + "0" * 64 + " this run was submitted with" in capsys.readouterr().err
    chunks = [c for c in mongo[REGISTRY_DATABASE]["levrt_files.chunks"].docs if c["files_id"] == record["sha256"]]
    first = chunks[0]["data"]
    chunks[0]["data"] = bytes([first[0] ^ 1]) + first[1:]  # the stored archive changed behind the registry's back
    assert main(["run", "--published", str(record["sha256"]), "demo/portscan:tcp", "target=10.0.0.1"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert created(api) == [] and mongo["levrt_journal"]["levrt_jobs"].docs == []
    # Publishing the same tree again writes the damaged copy again (content-addressed: it would be trusted).
    assert main(["publish", str(REPO / "examples" / "lev" / "demo" / "portscan")]) == 0
    assert "nothing changed" in capsys.readouterr().out
    [now] = [c for c in mongo[REGISTRY_DATABASE]["levrt_files.chunks"].docs if c["_id"] == chunks[0]["_id"]]
    assert now["data"] == first


def test_a_published_tool_that_imports_another_takes_it_from_the_registry_too(
        api: FakeApiServer, mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    """portscan's sweep imports lev.demo.banner: run by name, both come from the registry."""
    from levrt._cli.published import load_published

    assert main(["publish", str(REPO / "examples" / "lev" / "demo" / "portscan")]) == 0
    for name in [n for n in sys.modules if n == "lev" or n.startswith("lev.")]:
        del sys.modules[name]
    capsys.readouterr()
    assert main(["run", "demo/portscan:sweep"]) == 2
    assert "imports lev.demo.banner, and no tool demo/banner is published: publish it too" in capsys.readouterr().err
    assert main(["publish", str(REPO / "examples" / "lev" / "demo" / "banner")]) == 0
    args = type("Args", (), {"namespace": None, "kubeconfig": None})()
    loaded = load_published(parse_tool("demo/portscan"), "sweep", args)
    banner = published(mongo, "demo/banner")
    assert loaded.what("sweep", [])["uses"] == [f"demo/banner@{banner['version']}"]
    assert sys.modules["lev.demo.banner"].__file__.startswith(tempfile_root())  # the registry's copy, not examples/
    assert created(api) == []


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


# -- the registry writer's credential (issue 23, item 5) -----------------------------------------------


def test_publishing_uses_the_registry_writers_uri_and_says_when_the_account_may_not(
        api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    writer = "mongodb://levrt-registry:pw@levrt-store.levrt.svc:27017/levrt_registry?authSource=levrt_registry"
    api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "levrt-registry", "namespace": "levrt"},
             "data": {"uri": base64.b64encode(writer.encode()).decode()}})
    assert main(["publish", str(REPO / "examples" / "lev" / "demo" / "banner")]) == 0
    # The Secret's user, not the store's application user, at the address this machine reaches it by.
    assert mongo.uris[-1] == "mongodb://levrt-registry:pw@127.0.0.1:30017/levrt_registry?authSource=levrt_registry"
    assert main(["tools", "-o", "json"]) == 0
    assert mongo.uris[-1] == os.environ["LEVRT_STORE_URI"]  # reading needs no more than a task has

    monkeypatch.setenv("LEVRT_REGISTRY_URI", "mongodb://mine@somewhere/levrt_registry")
    assert main(["unpublish", "demo/banner"]) == 0
    assert mongo.uris[-1] == "mongodb://mine@somewhere/levrt_registry"
    monkeypatch.delenv("LEVRT_REGISTRY_URI")

    capsys.readouterr()
    api.fail("GET", "/api/v1/namespaces/levrt/secrets/levrt-registry", 403, "secrets is forbidden")
    assert main(["publish", str(REPO / "examples" / "lev" / "demo" / "banner")]) == 1
    assert "may not read the Secret levrt/levrt-registry. Ask for the right to publish" in capsys.readouterr().err
    assert tools(mongo) == []
