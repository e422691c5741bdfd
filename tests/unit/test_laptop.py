"""``levrt up``, ``down`` and ``env``: the plans, the package data they use, and their behaviour.

Why: these commands run on a user's laptop, after ``pip install levrt``, against tools the test
machine may lack (Docker, kind, helm). The plans are pure and checked here flag by flag; the
commands themselves run against small stand-ins for docker, kind and helm that record their
arguments and keep state like the real ones (a cluster list, kind's network), so ordering,
idempotency, the checks made before anything is created, and a failed step's report are tested.
The real tools run in the end-to-end test (tests/kind).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from levrt._build import BuildError
from levrt._build.kind import (
    KIND_HOST_CIDRS,
    KIND_STORE_PORT,
    down_plan,
    env_lines,
    local_store_uri,
    packaged,
    up_plan,
)
from levrt._cli import main
from levrt._clients.kube import use_transport
from levrt.settings import DEFAULT_RUNTIME_IMAGE
from tests import fakes
from tests.fakes import FakeApiServer

ROOT = Path(__file__).resolve().parents[2]

# One program standing in for docker, kind and helm (by the name it is called as).
STUB = """\
import json, os, sys
from pathlib import Path

state = Path(os.environ["STUB_STATE"])
name, args = Path(sys.argv[0]).name, sys.argv[1:]
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps([name, *args]) + "\\n")
clusters = state / "clusters"
listed = clusters.read_text().split() if clusters.exists() else []


def named():
    return args[args.index("--name") + 1]


if name == "docker":
    if args[0] == "info":
        if (state / "docker-down").exists():
            sys.exit("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?")
        print("20.10.24")
    elif args[:2] == ["network", "inspect"]:
        sys.exit(0 if (state / "network").exists() else 1)
    elif args[0] == "ps":
        print((state / "attached").read_text() if (state / "attached").exists() else "")
    elif args[:2] == ["network", "rm"]:
        (state / "network").unlink()
        print(args[2])
elif name == "kind":
    if args[:2] == ["get", "clusters"]:
        if listed:
            print("\\n".join(listed))
        else:
            print("No kind clusters found.", file=sys.stderr)
    elif args[:2] == ["create", "cluster"]:
        clusters.write_text(" ".join([*listed, named()]))
        (state / "network").touch()
        print(f'Creating cluster "{named()}" ...')
    elif args[:2] == ["delete", "cluster"]:
        clusters.write_text(" ".join(c for c in listed if c != named()))
        print(f'Deleting cluster "{named()}" ...')
elif name == "helm" and (state / "helm-fails").exists():
    for i in range(40):
        print(f"helm line {i}")
    sys.exit("Error: INSTALLATION FAILED: context deadline exceeded")
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)


class Tools:
    """The stand-ins' directory (put first on PATH) and what they were asked to do."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.state = root / "state"
        self.bin.mkdir()
        self.state.mkdir()

    def install(self, *names: str) -> None:
        for name in names:
            path = self.bin / name
            path.write_text(f"#!{sys.executable}\n{STUB}")
            path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def clusters(self) -> list[str]:
        path = self.state / "clusters"
        return path.read_text().split() if path.exists() else []


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tools]:
    found = Tools(tmp_path)
    found.install("docker", "kind", "helm")
    monkeypatch.setenv("PATH", str(found.bin))  # nothing of the host's: a missing stand-in is a missing tool
    monkeypatch.setenv("STUB_STATE", str(found.state))
    yield found


@pytest.fixture
def archive(tmp_path: Path) -> str:
    path = tmp_path / "runtime.tar"
    path.write_bytes(b"an archive kind would load")
    return str(path)


# -- the pure plans -------------------------------------------------------------------------------


def _sets(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"]


def test_up_plan_creates_loads_the_archive_and_installs_the_chart_in_the_kind_context() -> None:
    plan = up_plan(cluster="lab", config="/k.yaml", chart="/chart", archive="/rt.tar", image="levrt.local/runtime:x",
                   exists=False)
    assert [cmd for _, cmd in plan][:2] == [
        ["kind", "create", "cluster", "--name", "lab", "--config", "/k.yaml", "--wait", "5m"],
        ["kind", "load", "image-archive", "/rt.tar", "--name", "lab"],
    ]
    helm = plan[2][1]
    assert helm[:5] == ["helm", "upgrade", "--install", "levrt", "/chart"]
    assert helm[helm.index("--kube-context") + 1] == "kind-lab"
    assert helm[helm.index("--namespace") + 1] == "levrt" and "--create-namespace" in helm and "--wait" in helm
    assert _sets(helm) == ["runtime.image=levrt.local/runtime:x", "store.nodePort.enabled=true",
                           f"store.nodePort.port={KIND_STORE_PORT}",
                           "store.networkPolicy.allowCIDRs={" + ",".join(KIND_HOST_CIDRS) + "}"]
    assert all(title for title, _ in plan)


def test_up_plan_for_an_existing_cluster_only_makes_its_context_current_again() -> None:
    plan = up_plan(cluster="lab", config="/k.yaml", chart="/chart", archive="/rt.tar", image="i:1", exists=True)
    assert plan[0][1] == ["kind", "export", "kubeconfig", "--name", "lab"]
    assert not any(cmd[:2] == ["kind", "create"] for _, cmd in plan)
    assert [cmd[:3] for _, cmd in plan[1:]] == [["kind", "load", "image-archive"], ["helm", "upgrade", "--install"]]


def test_down_plan_deletes_the_named_cluster() -> None:
    assert [cmd for _, cmd in down_plan("lab")] == [["kind", "delete", "cluster", "--name", "lab"]]


@pytest.mark.parametrize(("uri", "local"), [
    ("mongodb://levrt:s3cret@levrt-store.levrt.svc.cluster.local:27017/?authSource=levrt",
     "mongodb://levrt:s3cret@127.0.0.1:30017/?authSource=levrt"),
    ("mongodb://levrt-store.levrt.svc.cluster.local:27017/", "mongodb://127.0.0.1:30017/"),
    ("mongodb://levrt-store.levrt.svc:27017", "mongodb://127.0.0.1:30017/"),
    ("mongodb://u:p%40ss@levrt-store:27017/levrt?authSource=admin&tls=false",
     "mongodb://u:p%40ss@127.0.0.1:30017/levrt?authSource=admin&tls=false"),
])
def test_the_store_uri_is_rewritten_to_the_host_port_kind_maps(uri: str, local: str) -> None:
    assert local_store_uri(uri, KIND_STORE_PORT) == local


def test_a_store_uri_that_is_not_mongodb_is_refused() -> None:
    with pytest.raises(BuildError, match="not a mongodb:// URI"):
        local_store_uri("postgres://db:5432/", KIND_STORE_PORT)


def test_env_lines_survive_the_shell_with_awkward_passwords() -> None:
    uri = "mongodb://app:it's$HOME`x`@levrt-store.levrt.svc.cluster.local:27017/?authSource=levrt"
    script = "\n".join(env_lines(uri=uri, port=31017)) + '\nprintf "%s|%s" "$LEVRT_NAMESPACE" "$LEVRT_STORE_URI"'
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == "levrt|mongodb://app:it's$HOME`x`@127.0.0.1:31017/?authSource=levrt"


# -- package data ---------------------------------------------------------------------------------


def test_the_packaged_kind_config_is_the_repositorys_and_maps_the_store_port() -> None:
    config = packaged("kind-config.yaml")
    assert config.read_bytes() == (ROOT / "kind-config.yaml").read_bytes()
    (node,) = yaml.safe_load(config.read_text())["nodes"]
    assert node["extraPortMappings"] == [{"containerPort": KIND_STORE_PORT, "hostPort": KIND_STORE_PORT,
                                          "listenAddress": "127.0.0.1", "protocol": "TCP"}]


def test_the_packaged_chart_is_charts_levrt() -> None:
    chart = packaged("chart")

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    shipped = files(chart)
    assert "Chart.yaml" in shipped and "templates/store.yaml" in shipped
    assert shipped == files(ROOT / "charts" / "levrt")


def test_an_unknown_packaged_name_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        packaged("Dockerfile")


def test_setuptools_copies_the_chart_and_kind_config_into_the_built_package(tmp_path: Path) -> None:
    """What a wheel holds (setuptools' build_py, which bdist_wheel zips): real files, not links,
    found by ``packaged`` from an interpreter that imports levrt from there, outside the checkout."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "kind-config.yaml"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "charts", src / "charts")
    shutil.copytree(ROOT / "levrt", src / "levrt", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "lib"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "-d", str(out)],
                   cwd=src, env=env, check=True, capture_output=True, timeout=120)
    built = out / "levrt" / "_build"
    assert not (built / "chart").is_symlink() and not (built / "kind-config.yaml").is_symlink()
    assert (built / "chart" / "templates" / "store.yaml").read_bytes() == \
        (ROOT / "charts" / "levrt" / "templates" / "store.yaml").read_bytes()
    probe = ("import levrt; from levrt._build.kind import packaged; "
             "print(levrt.__file__); print(packaged('chart')); print(packaged('kind-config.yaml'))")
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**env, "PYTHONPATH": str(out)},
                           capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert found == [str(out / "levrt" / "__init__.py"), str(built / "chart"), str(built / "kind-config.yaml")]


# -- levrt up -------------------------------------------------------------------------------------


def test_up_dry_run_prints_the_commands_with_the_packaged_files_and_runs_nothing(
        tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # not a checkout: the files come from the package
    assert main(["up", "--dry-run", "--name", "lab"]) == 0
    plan = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert plan[0] == ["kind", "create", "cluster", "--name", "lab", "--config", str(packaged("kind-config.yaml")),
                       "--wait", "5m"]
    assert plan[1] == ["kind", "load", "image-archive", "<runtime-archive>", "--name", "lab"]
    assert plan[2][:5] == ["helm", "upgrade", "--install", "levrt", str(packaged("chart"))]
    assert f"runtime.image={DEFAULT_RUNTIME_IMAGE}" in plan[2]
    assert tools.calls() == []


def test_up_creates_the_cluster_once_and_is_idempotent(tools: Tools, archive: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--runtime-archive", archive]) == 0
    first = tools.calls()
    assert [c[:3] for c in first] == [["docker", "info", "--format"], ["kind", "get", "clusters"],
                                      ["kind", "create", "cluster"], ["kind", "load", "image-archive"],
                                      ["helm", "upgrade", "--install"]]
    assert first[2][-4:] == ["--config", str(packaged("kind-config.yaml")), "--wait", "5m"]
    assert first[3][3] == archive
    err = capsys.readouterr().err
    assert "progress: creating the kind cluster levrt" in err and 'Creating cluster "levrt"' in err
    assert 'eval "$(levrt env)"' in err.splitlines()[-1]
    assert tools.clusters() == ["levrt"]

    assert main(["up", "--runtime-archive", archive]) == 0
    again = tools.calls()[len(first):]
    assert [c[:3] for c in again] == [["docker", "info", "--format"], ["kind", "get", "clusters"],
                                      ["kind", "export", "kubeconfig"], ["kind", "load", "image-archive"],
                                      ["helm", "upgrade", "--install"]]
    assert tools.clusters() == ["levrt"]


def test_up_names_every_missing_tool_before_doing_anything(tools: Tools, archive: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tools.bin / "helm").unlink()
    (tools.bin / "kind").unlink()
    assert main(["up", "--runtime-archive", archive]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("levrt up: kind and helm not found on PATH: install kind (") and "helm (" in err
    assert tools.calls() == []


def test_up_says_the_docker_daemon_is_unreachable_before_creating_anything(
        tools: Tools, archive: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tools.state / "docker-down").touch()
    assert main(["up", "--runtime-archive", archive]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("levrt up: the Docker daemon is not reachable") and "Is the docker daemon running?" in err
    assert [c[:2] for c in tools.calls()] == [["docker", "info"]]


def test_a_failed_step_is_named_with_the_tail_of_its_output(tools: Tools, archive: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tools.state / "helm-fails").touch()
    assert main(["up", "--runtime-archive", archive]) == 1
    err = capsys.readouterr().err
    message = err[err.index("levrt up: "):]
    assert message.startswith("levrt up: step failed: installing the chart")
    assert "context deadline exceeded" in message and "helm line 39" in message
    assert "helm line 10" not in message  # only the tail


def test_up_refuses_a_runtime_archive_or_kind_config_that_is_not_there(
        tools: Tools, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--runtime-archive", str(tmp_path / "nope.tar")]) == 2
    assert "--runtime-archive" in capsys.readouterr().err
    assert main(["up", "--kind-config", str(tmp_path / "nope.yaml"), "--dry-run"]) == 2
    assert "--kind-config" in capsys.readouterr().err
    assert tools.calls() == []


# -- levrt down -----------------------------------------------------------------------------------


def test_down_deletes_the_cluster_and_kinds_network_then_finds_nothing(
        tools: Tools, archive: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--runtime-archive", archive]) == 0
    capsys.readouterr()
    assert main(["down"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["removed kind cluster levrt (and its context kind-levrt)",
                   "removed Docker network kind (kind leaves it behind)"]
    assert tools.clusters() == [] and not (tools.state / "network").exists()
    assert main(["down"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "Nothing to remove." in captured.err


def test_down_keeps_kinds_network_while_a_container_uses_it(tools: Tools, archive: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--runtime-archive", archive]) == 0
    (tools.state / "attached").write_text("0123456789ab\n")
    assert main(["down"]) == 0
    captured = capsys.readouterr()
    assert "kept the Docker network kind: 1 container(s) still use it" in captured.err
    assert (tools.state / "network").exists()


def test_down_without_kind_says_so(tools: Tools, capsys: pytest.CaptureFixture[str]) -> None:
    (tools.bin / "kind").unlink()
    assert main(["down"]) == 2
    assert capsys.readouterr().err.startswith("levrt down: kind not found on PATH: install kind (")


# -- levrt env ------------------------------------------------------------------------------------


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    monkeypatch.setitem(fakes.KINDS, "services", "Service")  # the fake serves Services like any core object
    api = FakeApiServer(namespaces=["levrt"])
    with use_transport(lambda: api):
        yield api


def test_env_prints_the_store_uri_at_the_nodeport_on_localhost(api: FakeApiServer,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    uri = "mongodb://levrt:pw@levrt-store.levrt.svc.cluster.local:27017/?authSource=levrt"
    api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "levrt-store", "namespace": "levrt"},
             "data": {"uri": base64.b64encode(uri.encode()).decode()}})
    api.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "levrt-store-nodeport", "namespace": "levrt"},
             "spec": {"type": "NodePort", "ports": [{"name": "mongodb", "port": 27017, "nodePort": 31234}]}})
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ["export LEVRT_NAMESPACE=levrt",
                         "export LEVRT_STORE_URI='mongodb://levrt:pw@127.0.0.1:31234/?authSource=levrt'"]


def test_env_before_up_says_to_run_up(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 1
    err = capsys.readouterr().err
    assert "levrt is not installed in namespace levrt of kind cluster levrt" in err and "levrt up" in err


def test_up_passes_the_users_chart_values_to_helm_after_levrts(
        tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["up", "--dry-run", "--set", "store.engine=ferretdb", "--set", "reaper.enabled=false"]) == 0
    helm = capsys.readouterr().out.splitlines()[-1].split()
    assert helm[0] == "helm"
    sets = [helm[i + 1] for i, arg in enumerate(helm) if arg == "--set"]
    # the user's values come last, so they win over levrt's defaults for the same key
    assert sets[-2:] == ["store.engine=ferretdb", "reaper.enabled=false"]
    assert "runtime.image=" + DEFAULT_RUNTIME_IMAGE in sets
    assert tools.calls() == []


@pytest.mark.parametrize("bad", ["store.engine", "=ferretdb"])
def test_up_refuses_a_chart_value_that_is_not_key_equals_value(tools: Tools, bad: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--set", bad]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert tools.calls() == []
