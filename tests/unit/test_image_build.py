"""``levrt image build``: the OCI writer, the runtime image it makes, and the refusals around it.

Why: the runtime image is built on the user's machine from the user's Python (no Docker, no base
image), and both ``levrt up`` and the test cluster load what it writes. The writer must be
deterministic (same directories, same digest: imports are skipped on that), the image must hold
the three layers task and orchestration Pods rely on, built from *this* interpreter, and where
it cannot be built the user must be told what to install or to use the Dockerfile instead.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from levrt._build import BuildError, bundle
from levrt._build.oci import OCI_LAYER, Image, write_archive
from levrt._cli import main

ROOT = Path(__file__).resolve().parents[2]
MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"


def _layout(archive: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[tarfile.TarFile]]:
    """index.json, the manifest, the config and the layers (in memory) of an OCI layout archive."""
    with tarfile.open(archive) as outer:
        files = {m.name: outer.extractfile(m).read() for m in outer.getmembers() if m.isfile()}  # type: ignore[union-attr]

    def blob(digest: str) -> bytes:
        return files[f"blobs/sha256/{digest.split(':', 1)[1]}"]

    index = json.loads(files["index.json"])
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    layers = [tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) for layer in manifest["layers"]]
    return index, manifest, config, layers


# -- the OCI writer -------------------------------------------------------------------------------


def _tree(root: Path, stamp: int) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "link").symlink_to("bin/tool")
    for path in [root / "bin" / "tool", root / "bin", root]:
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    return root


def test_the_same_directories_give_the_same_digest_whatever_their_times(tmp_path: Path) -> None:
    first = Image("levrt.local/t:1", (_tree(tmp_path / "a", 1_000_000),), entrypoint=("/bin/tool",))
    second = Image("levrt.local/t:1", (_tree(tmp_path / "b", 2_000_000),), entrypoint=("/bin/tool",))
    digest = write_archive(first, tmp_path / "a.tar")
    assert write_archive(second, tmp_path / "b.tar") == digest
    (tmp_path / "b" / "bin" / "tool").write_text("#!/bin/sh\necho changed\n")
    assert write_archive(second, tmp_path / "c.tar") != digest


def test_the_archive_is_an_oci_layout_named_for_containerd(tmp_path: Path) -> None:
    layer = _tree(tmp_path / "root", 5)
    digest = write_archive(Image("levrt.local/t:2", (layer,), cmd=("sh",), labels={"k": "v"}), tmp_path / "t.tar")
    with tarfile.open(tmp_path / "t.tar") as outer:
        assert {"oci-layout", "index.json"} <= set(outer.getnames())
    index, manifest, config, (files,) = _layout(tmp_path / "t.tar")
    entry = index["manifests"][0]
    assert entry["digest"] == digest and entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert entry["annotations"]["io.containerd.image.name"] == "levrt.local/t:2"
    assert manifest["layers"][0]["mediaType"] == OCI_LAYER
    assert config["config"]["Cmd"] == ["sh"] and config["config"]["Labels"] == {"k": "v"}
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    members = {m.name: m for m in files.getmembers()}
    assert sorted(members) == ["bin", "bin/tool", "link"]
    assert members["link"].issym() and members["link"].linkname == "bin/tool"
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "root" for m in members.values())
    assert members["bin/tool"].mode & 0o111


# -- the runtime image ----------------------------------------------------------------------------


def test_image_build_writes_the_runtime_image_of_this_python(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "rt.tar"
    assert main(["image", "build", "-o", str(archive), "--ref", "levrt.local/runtime:check"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(archive)
    assert "progress: writing the image archive" in captured.err
    index, _, config, (prefix, link, client) = _layout(archive)
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "levrt.local/runtime:check"
    assert config["config"]["Entrypoint"] == ["/levrt/bin/python3"]
    assert config["config"]["Labels"] == {"io.levrt.python": MINOR}

    site = f"lib/python{MINOR}/site-packages"
    names = set(prefix.getnames())
    assert {"bin/python3", f"bin/python{MINOR}", "lib/ld-linux-x86-64.so.2",
            f"{site}/levrt/runtime/__init__.py"} <= names
    assert not any(n.startswith((f"{site}/levrt/_build/chart", f"{site}/levrt/_build/kind-config")) for n in names)
    pickled = prefix.extractfile(f"{site}/cloudpickle/__init__.py")
    assert pickled is not None
    assert re.search(rf"__version__ = ['\"]{re.escape(cloudpickle.__version__)}['\"]", pickled.read().decode())

    (levrt_link,) = link.getmembers()
    assert levrt_link.name == "levrt" and levrt_link.issym() and levrt_link.linkname == "."
    assert any(n.startswith("opt/levrt-orchestrator/kubernetes_asyncio/") for n in client.getnames())


def test_image_build_refuses_a_directory_as_its_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "build", "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_image_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["image"])
    assert exc.value.code == 2
    assert "ACTION" in capsys.readouterr().err


@pytest.mark.parametrize(("system", "machine"), [("darwin", "arm64"), ("linux", "aarch64"), ("win32", "AMD64")])
def test_elsewhere_the_build_points_to_the_dockerfile(system: str, machine: str) -> None:
    with pytest.raises(BuildError, match=r"Linux x86_64 only .*images/runtime/Dockerfile"):
        bundle.check_platform(system, machine)


def test_a_missing_tool_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match=r"needs `ldd`, which is not on PATH: install glibc's ldd"):
        bundle.tool("ldd")
    with pytest.raises(BuildError, match=r"needs `strip`.*install binutils"):
        bundle.tool("strip")


# -- the Dockerfile for registry users ------------------------------------------------------------


def test_the_dockerfile_takes_its_base_as_an_argument_and_runs_the_packaged_builder() -> None:
    lines = [line.strip() for line in (ROOT / "images" / "runtime" / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    first_from = next(i for i, line in enumerate(lines) if line.startswith("FROM"))
    args = dict(line.removeprefix("ARG ").split("=", 1) for line in lines[:first_from])
    assert args == {"PYTHON_VERSION": MINOR, "BASE": "python:${PYTHON_VERSION}-slim-bookworm"}
    assert lines[first_from] == "FROM ${BASE} AS build"
    assert any("python -m levrt._build.bundle /out/bundle --client-site" in line for line in lines)
    # The package's links (levrt/_build/chart, kind-config.yaml) resolve inside the build context copy.
    assert "COPY charts ./charts" in lines and any(line.startswith("COPY") and "kind-config.yaml" in line
                                                    for line in lines)
