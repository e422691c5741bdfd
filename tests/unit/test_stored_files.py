"""Files of any size, from the client to the Pod: the engine uploads large content at submit
(once, and not at all when stored already), an unknown Digest fails before anything is created,
``levrt.upload`` and ``levrt put`` give Digests, and the ``levrt-files`` init container
(``levrt.runtime.fetch``) streams each content into place, checked."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import levrt
from levrt import Cr, Digest
from levrt._clients.blobs import FileStore
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from levrt._core.engine import Engine
from levrt._stored import CHUNK_SIZE, CHUNKS, FILES
from levrt.cr import MAX_FILE_BYTES
from levrt.errors import FileSpecError
from levrt.run import session
from levrt.runtime import fetch
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

STORE = "mongodb://127.0.0.1:30017/"
SETTINGS = Settings(store_uri=STORE, runtime_image="levrt.local/runtime:t")
POD = "lev-j1-t0"


@contextlib.asynccontextmanager
async def open_job(api: FakeApiServer, mongo: FakeMongo) -> AsyncIterator[Engine]:
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=SETTINGS) as engine:
            yield engine


async def start_and_run(api: FakeApiServer, cr: Cr, pod: str = POD) -> None:
    """Start ``cr`` and play the kubelet: once ungated, its main container runs, then exits 0."""
    starting = asyncio.create_task(cr.start())
    await api.until(lambda: (api.get("pods", pod) or {"spec": {"schedulingGates": [1]}})["spec"].get(
        "schedulingGates") is None)
    api.set_running(pod)
    task = await starting
    api.set_terminated(pod, 0)
    await task.done()


def created_pod(api: FakeApiServer, name: str = POD) -> dict[str, Any]:
    """The Pod ``name`` as the engine created it (the Pods are deleted at the end of the job)."""
    bodies = [json.loads(r.body or b"{}") for r in api.requests if r.method == "POST" and r.path.endswith("/pods")]
    return dict(next(b for b in bodies if b["metadata"]["name"] == name))


def stored(mongo: FakeMongo) -> dict[str, int]:
    return {d["_id"]: d["length"] for d in mongo["levrt"][FILES].docs}


async def test_large_files_are_uploaded_once_at_submit_and_fetched_into_the_pod(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    words = tmp_path / "words.txt"
    words.write_bytes(os.urandom(2 * CHUNK_SIZE + 5))
    big = b"b" * (MAX_FILE_BYTES + 1)
    sha_words, sha_big = hashlib.sha256(words.read_bytes()).hexdigest(), hashlib.sha256(big).hexdigest()
    caplog.set_level(logging.INFO, logger="lev")
    async with open_job(api, mongo):
        # Two tasks at once over the same wordlist: one upload.
        await asyncio.gather(
            start_and_run(api, Cr("busybox:1.36", files={"/w.txt": words, "/big": big}), "lev-j1-t0"),
            start_and_run(api, Cr("busybox:1.36", files={"/w.txt": words}), "lev-j1-t1"),
        )
        pod = created_pod(api)
    assert stored(mongo) == {sha_words: words.stat().st_size, sha_big: len(big)}
    assert pod["spec"]["initContainers"][0]["command"][-2:] == [sha_words, sha_big]
    assert "progress: uploading words.txt (2.0 MiB)" in caplog.messages
    assert "progress: uploading /big (1023.0 KiB)" in caplog.messages
    assert sum("uploading words.txt" in m for m in caplog.messages) == 1
    # A second job with the same wordlist uploads nothing.
    caplog.clear()
    inserts = mongo["levrt"][CHUNKS].calls.count("insert_many")
    api2 = FakeApiServer(namespaces=["levrt"])
    async with open_job(api2, mongo):
        await start_and_run(api2, Cr("busybox:1.36", files={"/w.txt": words}), "lev-j2-t0")
    assert mongo["levrt"][CHUNKS].calls.count("insert_many") == inserts
    assert "progress: words.txt already stored (2.0 MiB)" in caplog.messages


async def test_an_unknown_digest_fails_before_anything_is_created() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    unknown = Digest("ab" * 32)
    async with open_job(api, mongo):
        with pytest.raises(FileSpecError, match=r"Digest abab.* \(files\['/opt/rockyou.txt'\]\) is not in the store: "
                                                r"store the content first with `levrt put FILE` or "
                                                r"`await levrt.upload\(...\)`"):
            await Cr("busybox:1.36", files={"/opt/rockyou.txt": unknown}).start()
    # Only the job's own Lease was created (at open), and it is gone with the job (a SelfSubjectReview,
    # asking who runs the job, creates nothing).
    posts = [r.path for r in api.requests if r.method == "POST" and not r.path.endswith("reviews")]
    assert posts == ["/apis/coordination.k8s.io/v1/namespaces/levrt/leases"]
    assert api.names("leases") == []


async def test_a_digest_from_levrt_upload_is_mounted_without_sending_it_again(tmp_path: pathlib.Path) -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    local = tmp_path / "rockyou.txt"
    local.write_bytes(b"123456\npassword\n" * 1000)
    async with open_job(api, mongo):
        digest = await levrt.upload(local)  # inside the job: the job's store
        assert digest == hashlib.sha256(local.read_bytes()).hexdigest() and isinstance(digest, Digest)
        assert await levrt.upload(b"raw") == hashlib.sha256(b"raw").hexdigest()
        await start_and_run(api, Cr("busybox:1.36", cmd=["wc", "-l", "/opt/rockyou.txt"],
                                    files={"/opt/rockyou.txt": digest}))
        pod = created_pod(api)
    assert pod["spec"]["initContainers"][0]["name"] == "levrt-files"
    assert pod["spec"]["containers"][-1]["volumeMounts"] == [
        {"name": "levrt-files", "mountPath": "/opt/rockyou.txt", "subPath": digest, "readOnly": True}]


async def test_levrt_upload_outside_a_job_connects_like_levrt_get(monkeypatch: pytest.MonkeyPatch) -> None:
    mongo = FakeMongo()
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    with use_client(mongo.client):
        digest = await levrt.upload("admin\nroot\n")
    assert digest == hashlib.sha256(b"admin\nroot\n").hexdigest() and mongo.uris == [STORE]
    assert mongo.clients[0].closed
    with pytest.raises(FileSpecError, match="give bytes"):
        await levrt.upload(42)  # type: ignore[arg-type]


# -- the levrt-files init container ------------------------------------------------------------------


async def test_fetch_streams_each_content_into_place_checked(tmp_path: pathlib.Path) -> None:
    mongo = FakeMongo()
    files = FileStore(mongo["levrt"][FILES], mongo["levrt"][CHUNKS])
    data = os.urandom(CHUNK_SIZE + 3)
    sha = (await files.upload(data, name="w")).sha256
    other = (await files.upload(b"small", name="s")).sha256
    env = {"LEVRT_STORE_URI": STORE, "LEVRT_DB": "levrt", "LEVRT_TERMINATION_LOG": str(tmp_path / "log")}
    out = tmp_path / "files"
    out.mkdir()
    assert fetch.main([str(out), sha, other, sha], env, connect=mongo.sync_client) == 0
    assert (out / sha).read_bytes() == data and (out / other).read_bytes() == b"small"
    assert sorted(p.name for p in out.iterdir()) == sorted([sha, other])  # no partial files
    assert (out / sha).stat().st_mode & 0o777 == 0o444


async def test_fetch_fails_clearly_on_missing_or_damaged_content(tmp_path: pathlib.Path) -> None:
    mongo = FakeMongo()
    files = FileStore(mongo["levrt"][FILES], mongo["levrt"][CHUNKS])
    sha = (await files.upload(os.urandom(100), name="w")).sha256
    chunk = mongo["levrt"][CHUNKS].docs[0]
    chunk["data"] = bytes(100)  # same size, wrong content
    log = tmp_path / "log"
    env = {"LEVRT_STORE_URI": STORE, "LEVRT_TERMINATION_LOG": str(log)}
    assert fetch.main([str(tmp_path), sha], env, connect=mongo.sync_client) == 1
    assert "damaged" in log.read_text() and [p.name for p in tmp_path.iterdir()] == ["log"]
    assert fetch.main([str(tmp_path), "cd" * 32], env, connect=mongo.sync_client) == 1
    assert f"{'cd' * 32} could not be fetched: Content {'cd' * 32} is not in the store" in log.read_text()
    assert fetch.main([str(tmp_path), "not-a-digest"], env, connect=mongo.sync_client) == 2
    assert fetch.main([str(tmp_path), sha], {"LEVRT_TERMINATION_LOG": str(log)}, connect=mongo.sync_client) == 1
    assert "LEVRT_STORE_URI is empty" in log.read_text()


async def test_a_fetch_that_fails_in_the_pod_fails_the_task_with_its_reason() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    async with open_job(api, mongo):
        digest = await levrt.upload(b"x" * 10)
        starting = asyncio.create_task(Cr("busybox:1.36", files={"/x": digest}).start())
        await api.until(lambda: api.get("pods", POD) is not None and not api.get("pods", POD)["spec"].get(
            "schedulingGates"))
        reason = f"levrt-files: {digest} could not be fetched: Content {digest} is not in the store's file storage"
        api.set_status(POD, {
            "phase": "Failed",
            "initContainerStatuses": [{"name": "levrt-files", "ready": False, "state": {"terminated": {
                "exitCode": 1, "reason": "Error", "message": reason}}}],
            "containerStatuses": [{"name": "main", "ready": False,
                                   "state": {"waiting": {"reason": "PodInitializing"}}}],
        })
        task = await starting
        with pytest.raises(levrt.TaskFailed, match=r"levrt-files.*could not be fetched") as failed:
            await task.done()
        assert failed.value.exit_code == 1
