"""The laptop path end to end, in the order the README's laptop quick start gives it.

Why: the first kind of levrt user runs the SDK from a laptop against kind. This test is that user
on a fresh machine: a new virtualenv outside the checkout gets ``pip install <levrt>`` (a real
wheel, not an editable install), and from a directory that is not the checkout it runs
``levrt up``, ``eval "$(levrt env)"``, ``levrt doctor``, the hello example, the workflow example,
``levrt ps`` and ``levrt down``, against Docker and a kind cluster whose node image was built on
this machine (tests/kind). The store is reached through the kind config's port mapping
(127.0.0.1:30017), as a laptop reaches it. At the end nothing ``levrt up`` added is left: no kind
container, no kind network, no Docker image, no kubeconfig context.

Differences from a laptop, all forced by a machine without a registry: ``levrt up`` gets the test
kind config (tests/kind/kind-config.yaml: the user's file plus our node image, a bridge CNI in
place of kindnetd, and the cgroup v1 kubelet switch; tests/kind/README.md lists them), the store is
FerretDB (``--set store.engine=ferretdb``, preloaded in the node) instead of the chart's default
``mongo:7.0``, and the examples run the node's preloaded ``levrt.local/busybox`` instead of pulling
``busybox:1.36``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import gotools
from tests.cluster.images import busybox_ref
from tests.cluster.log import progress
from tests.kind import cluster, dockerd

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.kind


def _run(cmd: list[str], env: dict[str, str], cwd: Path, *, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a user's command; its output is echoed (CI logs show what a user would see) and kept."""
    started = time.monotonic()
    result = subprocess.run(cmd, env=env, cwd=cwd, text=True, capture_output=True, timeout=timeout)
    progress(f"{shlex.join(cmd[:3])}... exited {result.returncode} in {time.monotonic() - started:.1f}s")
    sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def docker() -> Iterator[set[str]]:
    """Docker running with the kind node image in it (built here, cached by version); the images
    Docker holds before ``levrt up`` (so the test can tell what ``up`` added). Docker is stopped,
    and what it added to the host removed, at the end."""
    cluster.build()
    gotools.build(gotools.tool("helm"))
    if cluster.exists():  # a cluster left by an earlier run: `levrt up` must create its own
        cluster.delete()
    before = set(dockerd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split())
    yield before
    cluster.down()


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory, docker: set[str]) -> dict[str, object]:
    """A fresh virtualenv with levrt installed from a wheel, and a user's environment: docker,
    kind and helm on PATH, an empty home (kind writes the kubeconfig there), no KUBECONFIG."""
    home = tmp_path_factory.mktemp("home")
    work = tmp_path_factory.mktemp("work")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    tools = [str(venv / "bin"), str(cluster.kind_binary().parent), str(gotools.binary("helm").parent),
             *dockerd.DOCKER_BIN_DIRS, "/usr/local/bin", "/bin"]
    env = {"PATH": ":".join(tools), "HOME": str(home), "LANG": "C.UTF-8",
           # the package index is reached the same way; the runtime bundle is built in the new home
           "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = _run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], env, work)
    assert result.returncode == 0, result.stderr
    return {"env": env, "work": work, "venv": venv, "home": home}


def _user(laptop: dict[str, object]) -> tuple[dict[str, str], Path]:
    return dict(laptop["env"]), Path(str(laptop["work"]))  # type: ignore[call-overload]


def test_installed_levrt_is_the_wheel_not_the_checkout(laptop: dict[str, object]) -> None:
    env, work = _user(laptop)
    where = _run(["python", "-c", "import levrt._build.kind as k; print(k.packaged('chart'))"], env, work)
    assert where.returncode == 0, where.stderr
    chart = Path(where.stdout.strip())
    assert str(laptop["venv"]) in str(chart) and (chart / "Chart.yaml").is_file()
    assert not chart.is_symlink() and REPO not in chart.resolve().parents


def test_up_env_doctor_examples_down(laptop: dict[str, object], docker: set[str]) -> None:
    env, work = _user(laptop)
    started = time.monotonic()
    up = _run(["levrt", "up", "--kind-config", str(cluster.CONFIG), "--set", "store.engine=ferretdb"], env, work,
               timeout=1500)
    assert up.returncode == 0, up.stderr[-3000:]
    assert 'eval "$(levrt env)"' in up.stderr
    progress(f"levrt up took {time.monotonic() - started:.0f}s")

    # The README: eval "$(levrt env)" — the store through the port mapping on 127.0.0.1.
    printed = _run(["levrt", "env"], env, work)
    assert printed.returncode == 0, printed.stderr
    exports = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                   for line in printed.stdout.splitlines() if line.startswith("export "))
    assert "@127.0.0.1:30017" in exports["LEVRT_STORE_URI"] or "//127.0.0.1:30017" in exports["LEVRT_STORE_URI"]
    env.update(exports)

    doctor = _run(["levrt", "doctor"], env, work)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr

    env["LEVRT_EXAMPLE_IMAGE"] = busybox_ref()  # preloaded in our node image; a laptop pulls busybox:1.36
    hello = _run(["python", str(REPO / "examples" / "hello.py"), "laptop"], env, work)
    assert hello.returncode == 0, hello.stderr[-3000:]
    assert "Hello, laptop!" in hello.stdout
    # The runtime was built from this virtualenv's Python: the entry ran the same minor version.
    minor = _run(["python", "-c", "import platform; print(platform.python_version())"], env, work).stdout.strip()
    assert f"'python': '{minor}'" in hello.stdout

    workflow = _run(["levrt", "run", str(REPO / "examples" / "workflow.py")], env, work)
    assert workflow.returncode == 0, workflow.stderr[-3000:]
    report = json.loads(workflow.stdout[workflow.stdout.index("{"):])
    assert report["open"] == [2222, 8080] and report["banners"]["2222"].startswith("SSH-2.0")
    job = int(next(line.split()[1] for line in workflow.stderr.splitlines() if line.startswith("job: ")))

    ps = _run(["levrt", "ps", "--job", str(job), "-o", "json"], env, work)
    assert ps.returncode == 0, ps.stderr
    rows = json.loads(ps.stdout)
    assert len(rows) == 13 and {r["state"] for r in rows} == {"done"}
    assert any(r["name"].startswith("tcpscan.scan(") for r in rows)

    down = _run(["levrt", "down"], env, work)
    assert down.returncode == 0, down.stderr
    assert "kind cluster levrt" in down.stdout and "Docker network kind" in down.stdout
    assert dockerd.docker("ps", "-aq").split() == []
    assert "kind" not in dockerd.docker("network", "ls", "--format", "{{.Name}}").split()
    after = set(dockerd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split())
    assert after == docker, f"levrt up left images: {sorted(after - docker)}"
    kubeconfig = Path(env["HOME"]) / ".kube" / "config"
    assert "kind-levrt" not in (kubeconfig.read_text() if kubeconfig.exists() else "")
    again = _run(["levrt", "down"], env, work)
    assert again.returncode == 0 and "Nothing to remove" in again.stderr


def test_levrt_up_says_what_is_missing(laptop: dict[str, object]) -> None:
    env, work = _user(laptop)
    env["PATH"] = str(Path(str(laptop["venv"])) / "bin") + ":/usr/bin:/bin"  # no kind, no helm
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not (Path(p) / "kind").exists())
    result = _run(["levrt", "up"], env, work)
    assert result.returncode != 0
    assert "kind" in result.stderr and "helm" in result.stderr and "Traceback" not in result.stderr
    assert os.path.exists(str(work))
