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
    assert main["command"][4:] == ["/orchestration/flow.py:scan_all", "--no-progress", "a", "b"]
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
