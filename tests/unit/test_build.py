"""Builder properties beyond the snapshots: SPEC 2 mapping, dedup, owners, the file plan, limits."""

from __future__ import annotations

import base64
import hashlib
import pathlib

import pytest

import levrt
from levrt import Cr, Digest
from levrt._clients.submit import with_owner
from levrt._core.localfiles import read_local_files
from levrt._shapes.build import DEADLINE_MARGIN, build_task
from levrt._shapes.files import plan_files
from levrt.cr import MAX_FILE_BYTES
from levrt.errors import FileSpecError, LevrtError
from levrt.payload import loads_call
from levrt.runtime.timeout import TIMEOUT_GRACE
from levrt.settings import Settings
from tests.helpers import build

IMG = "levrt.local/busybox:1.36"


@levrt.remote
def entry(x: int = 1) -> int:
    return x * 2


def test_names_labels_and_pod_basics_without_a_gate() -> None:
    objs = build(Cr(IMG, entry=entry(21)), job=3, task=4, collection="ns|ts/x@1.0")
    pod = objs.pod
    assert pod["metadata"]["name"] == "lev-j3-t4" == objs.name
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "levrt",
        "levrt.io/job": "3",
        "levrt.io/task": "4",
    }
    spec = pod["spec"]
    assert "schedulingGates" not in spec  # what it mounts is created before it (levrt._clients.submit)
    assert spec["restartPolicy"] == "Never" and spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is False and "hostNetwork" not in spec
    env = {e["name"]: e for e in spec["containers"][-1]["env"]}
    assert env["LEVRT_COLLECTION"]["value"] == "ns|ts/x@1.0"
    assert env["LEVRT_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "levrt-store", "key": "uri"}
    secret = objs.owned[0]
    assert secret["metadata"]["name"] == "lev-j3-t4-payload" and secret["immutable"] is True
    func, args, kwargs = loads_call(base64.b64decode(secret["data"]["main"]))
    assert func(*args, **kwargs) == 42


def test_no_entry_no_runtime_no_secret() -> None:
    objs = build(Cr(IMG, cmd=["echo", "hi"]))
    spec = objs.pod["spec"]
    assert objs.owned == [] and "initContainers" not in spec and "volumes" not in spec
    assert spec["containers"][-1]["args"] == ["echo", "hi"] and "command" not in spec["containers"][-1]


def test_service_entry_gets_its_own_payload_key() -> None:
    cr = Cr(IMG, services={"helper": Cr("x:1", entry=entry(5), ports=[7000])})
    objs = build(cr)
    secret = objs.owned[0]
    assert list(secret["data"]) == ["svc-helper"]
    names = [c["name"] for c in objs.pod["spec"]["initContainers"]]
    assert names == ["levrt-runtime", "helper"]
    helper = objs.pod["spec"]["initContainers"][1]
    assert helper["restartPolicy"] == "Always" and helper["startupProbe"]["tcpSocket"] == {"port": 7000}
    assert {"name": "LEVRT_PAYLOAD", "value": "/levrt-payload/svc-helper"} in helper["env"]
    assert "command" not in objs.pod["spec"]["containers"][-1]


def test_same_content_is_one_object(tmp_path: pathlib.Path) -> None:
    local = tmp_path / "a.txt"
    local.write_bytes(b"same")
    cr = Cr(
        IMG,
        files={"/a": b"same", "/b": "same", "/c": local},
        services={"s": Cr("x:1", files={"/d": b"same"})},
    )
    objs = build(cr)
    configmaps = [o for o in objs.owned if o["kind"] == "ConfigMap"]
    sha = hashlib.sha256(b"same").hexdigest()
    assert [c["metadata"]["name"] for c in configmaps] == [f"levrt-f-{sha[:40]}"]
    assert configmaps[0]["data"] == {"content": "same"} and configmaps[0]["immutable"] is True
    assert configmaps[0]["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "levrt",
        "levrt.io/file": sha[:40],
    }
    side = objs.pod["spec"]["initContainers"][0]
    assert side["volumeMounts"] == [
        {"name": f"levrt-f-{sha[:40]}", "mountPath": "/d", "subPath": "content", "readOnly": True}
    ]


def test_binary_content_uses_binary_data() -> None:
    objs = build(Cr(IMG, files={"/x": b"\xff\xfe"}))
    assert objs.owned[0]["binaryData"] == {"content": base64.b64encode(b"\xff\xfe").decode()}
    assert "data" not in objs.owned[0]


def test_digest_is_fetched_from_the_store_by_the_first_init_container() -> None:
    sha = "cd" * 32
    objs = build(Cr(IMG, files={"/x": Digest(sha)}))
    spec = objs.pod["spec"]
    assert objs.owned == []  # no ConfigMap: the content is in the store's file storage
    assert spec["volumes"] == [{"name": "levrt-files", "emptyDir": {}}]
    fetch = spec["initContainers"][0]
    assert fetch["name"] == "levrt-files" and fetch["image"] == Settings().runtime_image
    assert fetch["command"] == ["/levrt/bin/python3", "-m", "levrt.runtime.fetch", "/levrt-files", sha]
    env = {e["name"]: e for e in fetch["env"]}
    assert env["LEVRT_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "levrt-store", "key": "uri"}
    assert env["LEVRT_DB"]["value"] == "levrt"
    assert fetch["volumeMounts"] == [{"name": "levrt-files", "mountPath": "/levrt-files"}]
    # An image without an entry gets the file too: mounted from the emptyDir at its exact path.
    assert spec["containers"][-1]["volumeMounts"] == [
        {"name": "levrt-files", "mountPath": "/x", "subPath": sha, "readOnly": True}
    ]


def test_content_over_the_configmap_limit_goes_through_the_store(tmp_path: pathlib.Path) -> None:
    big = b"w" * (MAX_FILE_BYTES + 1)
    text = "\u00e9" * (MAX_FILE_BYTES // 2 + 1)  # fewer characters than the limit, more bytes
    local = tmp_path / "words.txt"
    local.write_bytes(b"v" * (MAX_FILE_BYTES + 7))
    cr = Cr(
        IMG,
        files={"/big": big, "/text": text, "/words": local, "/small": b"s", "/again": big},
        services={"svc": Cr("x:1", files={"/svc/big": big})},
    )
    contents = read_local_files(cr)
    assert contents[str(local)] == hashlib.sha256(local.read_bytes()).hexdigest()  # hashed, not read
    objs = build(cr, local_files=contents)
    sha = {name: hashlib.sha256(data).hexdigest()
           for name, data in (("big", big), ("text", text.encode()), ("words", local.read_bytes()))}
    spec = objs.pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["levrt-files", "svc"]
    assert spec["initContainers"][0]["command"][4:] == [sha["big"], sha["text"], sha["words"]]  # once each
    mounts = {m["mountPath"]: m for m in spec["containers"][-1]["volumeMounts"]}
    assert mounts["/again"]["subPath"] == mounts["/big"]["subPath"] == sha["big"]
    assert mounts["/small"]["subPath"] == "content" and mounts["/small"]["name"].startswith("levrt-f-")
    assert spec["initContainers"][1]["volumeMounts"] == [
        {"name": "levrt-files", "mountPath": "/svc/big", "subPath": sha["big"], "readOnly": True}
    ]
    assert [o["kind"] for o in objs.owned] == ["ConfigMap"]  # only the small file
    # Built without a plan (a test, a dry run), large in-memory content is planned, hashed, by the builder.
    unplanned = build_task(Cr(IMG, files={"/big": big}), job=1, task=0, collection="c", settings=Settings())
    assert unplanned.pod["spec"]["initContainers"][0]["command"][4:] == [sha["big"]]
    stored = plan_files(cr, contents).stored
    assert list(stored) == [sha["big"], sha["text"], sha["words"]]
    assert stored[sha["big"]].targets == ("/big", "/again", "/svc/big")
    assert stored[sha["words"]].source == local and stored[sha["words"]].label == "words.txt"


def test_path_files_need_read_local_files(tmp_path: pathlib.Path) -> None:
    local = tmp_path / "x"
    local.write_text("x")
    cr = Cr(IMG, files={"/x": local})
    with pytest.raises(FileSpecError, match="read_local_files"):
        build(cr, local_files={})  # what read_local_files returned is not passed
    local.unlink()
    with pytest.raises(FileSpecError, match=str(local)):
        read_local_files(cr)


def test_path_file_grown_over_the_limit_at_submit_goes_through_the_store(tmp_path: pathlib.Path) -> None:
    local = tmp_path / "x"
    local.write_text("small")
    cr = Cr(IMG, files={"/x": local})
    local.write_bytes(b"0" * (1024 * 1024))
    hashes: dict[tuple[str, int, int, int, int], str] = {}
    assert read_local_files(cr, hashes=hashes) == {str(local): hashlib.sha256(local.read_bytes()).hexdigest()}
    assert list(hashes.values()) == [hashlib.sha256(local.read_bytes()).hexdigest()]
    hashes[next(iter(hashes))] = "ab" * 32  # the memo is used: a fan-out hashes a file once
    assert read_local_files(cr, hashes=hashes) == {str(local): "ab" * 32}


def test_the_file_plan_is_worked_out_once_without_touching_the_disk(tmp_path: pathlib.Path) -> None:
    local = tmp_path / "wordlist.txt"
    local.write_bytes(b"on disk")
    digest = Digest("cd" * 32)
    big = b"b" * (MAX_FILE_BYTES + 1)
    cr = Cr(IMG, files={"/w": local, "/d": digest, "/big": big, "/s": "small"},
            services={"svc": Cr("x:1", files={"/again": local, "/d2": digest})})
    local.unlink()  # the plan takes what was read: it reads nothing itself
    plan = plan_files(cr, {str(local): b"read at submit"})
    sha = hashlib.sha256(b"read at submit").hexdigest()
    big_sha = hashlib.sha256(big).hexdigest()
    assert [(f.target, f.sha256, f.content) for f in plan.containers["main"]] == [
        ("/w", sha, b"read at submit"),
        ("/d", digest, None),
        ("/big", big_sha, None),
        ("/s", hashlib.sha256(b"small").hexdigest(), b"small"),
    ]
    assert [(f.target, f.content) for f in plan.containers["svc"]] == [("/again", b"read at submit"), ("/d2", None)]
    assert list(plan.stored) == [digest, big_sha]  # in order of first use, each once
    assert plan.stored[digest].source is None and plan.stored[digest].targets == ("/d", "/d2")
    assert plan.stored[big_sha].source == big and plan.stored[big_sha].label == "/big"
    # A large local file, hashed at submit, is uploaded from the file and named by it.
    local.write_bytes(b"large")
    hashed = plan_files(Cr(IMG, files={"/w": local}), {str(local): Digest("ef" * 32)})
    assert hashed.containers["main"][0].content is None
    assert hashed.stored["ef" * 32].source == local and hashed.stored["ef" * 32].label == "wordlist.txt"


def test_host_network_and_aliases() -> None:
    cr = Cr(
        IMG, host=True, links={"a": "10.0.0.1", "b": "10.0.0.1"}, services={"redis": Cr("r:7", host=True)}
    )
    spec = build(cr).pod["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["hostAliases"] == [
        {"ip": "127.0.0.1", "hostnames": ["redis"]},
        {"ip": "10.0.0.1", "hostnames": ["a", "b"]},
    ]


def test_readiness_probe_for_ports() -> None:
    main = build(Cr(IMG, ports=[8000])).pod["spec"]["containers"][-1]
    assert main["readinessProbe"]["tcpSocket"] == {"port": 8000}
    assert main["ports"] == [{"containerPort": 8000, "protocol": "TCP"}]


def test_settings_knobs() -> None:
    s = Settings(
        timeout=60,
        resources={"limits": {"cpu": "1"}},
        node_selector={"k": "v"},
        tolerations=({"operator": "Exists"},),
        image_pull_policy="Never",
        namespace="scans",
    )
    objs = build(Cr(IMG, entry=entry()), settings=s)
    spec = objs.pod["spec"]
    # Settings.timeout is the default of Cr(timeout=...): the runtime's timer, the kubelet's backstop.
    assert spec["activeDeadlineSeconds"] == 60 + TIMEOUT_GRACE + DEADLINE_MARGIN and spec["nodeSelector"] == {"k": "v"}
    assert {"name": "LEVRT_TIMEOUT", "value": "60"} in spec["containers"][-1]["env"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["containers"][-1]["resources"] == {"limits": {"cpu": "1"}}
    assert {c["imagePullPolicy"] for c in spec.get("initContainers", []) + spec["containers"]} == {"Never"}
    assert len(spec["containers"]) == 2  # main and the runtime copier
    assert {o["metadata"]["namespace"] for o in objs.all()} == {"scans"}


def test_bad_ids() -> None:
    with pytest.raises(LevrtError, match="job=-1"):
        build(Cr(IMG), job=-1)


def test_with_owner_copies_and_appends() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "x"}}
    a = with_owner(obj, pod_name="lev-j1-t0", pod_uid="u1")
    assert "ownerReferences" not in obj["metadata"]
    assert a["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "lev-j1-t0", "uid": "u1"}
    ]
    b = with_owner(a, pod_name="lev-j1-t1", pod_uid="u2")
    assert [r["uid"] for r in b["metadata"]["ownerReferences"]] == ["u1", "u2"]
    assert with_owner(b, pod_name="lev-j1-t1", pod_uid="u2") == b


def test_builder_is_pure() -> None:
    cr = Cr(IMG, entry=entry(), files={"/x": "y"})
    first, second = build(cr), build(cr)
    assert first.pod == second.pod
    first.pod["spec"]["containers"][-1]["env"].clear()
    assert build(cr).pod == second.pod
