"""The in-cluster orchestration Pod is built purely and carries what the SDK needs inside."""

from __future__ import annotations

import base64

import pytest

from levrt._shapes.orchestrator import SERVICE_ACCOUNT, orchestrator_objects
from levrt.errors import OrchestrationError
from levrt.settings import Settings

SETTINGS = Settings(namespace="scans", runtime_image="levrt.local/runtime:test")


def build(source: bytes = b"async def main(): pass\n") -> tuple[dict, dict]:
    objects = orchestrator_objects(sources={"flow.py": source, "tool.py": b"X = 1\n"}, entry="flow.py",
                                   func="scan_all", args=["a", "b"], settings=SETTINGS, run_id="abc123",
                                   env={"LEVRT_TIMEOUT": "60"})
    assert len(objects.owned) == 1
    return objects.pod, objects.owned[0]


def test_pod_runs_the_file_under_the_orchestrator_account_behind_the_gate() -> None:
    pod, source = build()
    spec = pod["spec"]
    assert spec["serviceAccountName"] == SERVICE_ACCOUNT
    assert spec["schedulingGates"] == [{"name": "levrt.io/objects"}]
    main = spec["containers"][0]
    assert main["image"] == "levrt.local/runtime:test"
    assert main["command"][4:] == ["--no-progress", "/orchestration/flow.py:scan_all", "--", "a", "b"]
    assert main["command"][:4] == ["/levrt/bin/python3", "-m", "levrt", "run"]
    env = {e["name"]: e for e in main["env"]}
    assert env["LEVRT_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "levrt-store", "key": "uri"}
    assert env["LEVRT_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert pod["metadata"]["labels"]["levrt.io/role"] == "orchestrator"
    assert main["env"][-1] == {"name": "LEVRT_TIMEOUT", "value": "60"}  # the user's --env, last
    assert pod["metadata"]["namespace"] == source["metadata"]["namespace"] == "scans"


def test_source_travels_byte_for_byte_in_an_immutable_configmap() -> None:
    text = "async def main():\n    return 'é'\n".encode()
    pod, source = build(text)
    assert source["immutable"] is True
    assert base64.b64decode(source["binaryData"]["flow.py"]) == text
    assert base64.b64decode(source["binaryData"]["tool.py"]) == b"X = 1\n"  # modules beside it travel too
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == source["metadata"]["name"]


def test_oversized_file_is_refused_before_anything_is_created() -> None:
    with pytest.raises(OrchestrationError, match="KiB"):
        build(b"#" * (600 * 1024))


def test_a_package_travels_in_its_layout() -> None:
    sources = {"lev/demo/tool/__init__.py": b"", "lev/demo/tool/flows.py": b"async def main(): pass\n",
               "lev/demo/other/mod.py": b"X = 1\n"}
    objects = orchestrator_objects(sources=sources, entry="lev/demo/tool/flows.py", func="main", args=[],
                                   settings=SETTINGS, run_id="abc123")
    configmap, volume = objects.owned[0], objects.pod["spec"]["volumes"][0]["configMap"]
    paths = {item["path"]: item["key"] for item in volume["items"]}
    assert set(paths) == set(sources)  # every file, at its path under /orchestration
    assert all("/" not in key for key in configmap["binaryData"])  # ConfigMap keys cannot hold '/'
    for path, data in sources.items():
        assert base64.b64decode(configmap["binaryData"][paths[path]]) == data
    command = objects.pod["spec"]["containers"][0]["command"]
    assert "/orchestration/lev/demo/tool/flows.py:main" in command


def test_sources_of_a_file_inside_a_package_are_its_whole_top_package() -> None:
    from pathlib import Path

    from levrt._core.sources import orchestration_sources

    examples = Path(__file__).resolve().parents[2] / "examples"
    sources, entry = orchestration_sources(examples / "lev/demo/portscan/flows.py")
    assert entry == "lev/demo/portscan/flows.py"
    assert {"lev/demo/portscan/scan.py", "lev/demo/banner/grab.py", entry} <= set(sources)
    assert all(path.startswith("lev/") for path in sources)
    flat, name = orchestration_sources(examples / "workflow.py")
    assert name == "workflow.py" and "tcpscan.py" in flat and all("/" not in p for p in flat)


def test_the_pod_reads_the_raw_arguments_again_and_names_a_function_only_if_one_was_named() -> None:
    # The laptop checked the call; the Pod's `levrt run` converts the same strings by the same rules.
    # Without FUNC, the Pod takes the file's default (its main, or the job its import runs).
    objects = orchestrator_objects(sources={"flow.py": b""}, entry="flow.py", func=None,
                                   args=["10.0.0.1", "times=3", "-v"], settings=SETTINGS, run_id="abc123")
    command = objects.pod["spec"]["containers"][0]["command"]
    assert command[4:] == ["--no-progress", "/orchestration/flow.py", "--", "10.0.0.1", "times=3", "-v"]
