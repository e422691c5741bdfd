"""Data of any size on the real cluster (issue 11, part 3): a 64 MB wordlist mounted into an image
without an entry, a 40 MB result read back byte for byte, a 200 MB artifact streamed by a task
whose memory stays small, all through the store's file storage (FerretDB on SQLite here).

Each test prints how long the large steps took (run with ``-s`` to see them) and removes the
content it stored, so the shared test store does not grow run after run (FerretDB on SQLite
scans a collection for every query: a larger bucket makes every read slower).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import pytest

import levrt
from levrt import Cr, Digest, lev
from levrt._shapes.names import job_selector
from levrt._stored import CHUNKS, FILES
from levrt.errors import FileSpecError
from levrt.run import session
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

MB = 1024 * 1024
WORDLIST = "/usr/share/wordlists/words.txt"


def figure(text: str) -> None:
    print(f"\n[large-data] {text}", file=sys.stderr, flush=True)


async def forget(job: Any, *shas: str) -> None:
    """Remove content this test stored (files document first: it is what makes content exist)."""
    files, chunks = job.store.collection(FILES), job.store.collection(CHUNKS)
    for sha in shas:
        await files.delete_one({"_id": sha})
        await chunks.delete_many({"files_id": sha})


async def output_of(task: Any, needle: str, *, timeout: float = 120) -> str:
    """The task's log once it shows ``needle`` (the Pod stays until ``done()``)."""
    deadline = time.monotonic() + timeout
    while True:
        text = await task.logs()
        if needle in text or time.monotonic() > deadline:
            return str(text)
        await asyncio.sleep(0.5)


# -- files ------------------------------------------------------------------------------------------


async def test_a_64_mb_wordlist_is_uploaded_once_and_mounted_in_an_image_without_an_entry(
        job: Any, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, kube_cluster: Any,
        levrt_settings: Any) -> None:
    words = tmp_path / "words.txt"
    with open(words, "wb") as fh:
        for _ in range(64):
            fh.write(os.urandom(MB))
    sha = hashlib.sha256(words.read_bytes()).hexdigest()
    await forget(job, sha)  # a fresh upload, whatever an earlier run left
    caplog.set_level(logging.INFO, logger="lev")
    cr = Cr(BUSYBOX, cmd=["sha256sum", WORDLIST], files={WORDLIST: words})
    try:
        started = time.monotonic()
        task = await cr.start()
        running = time.monotonic() - started
        out = await output_of(task, WORDLIST)
        fetched = await job.pod_logs(task.pod, container="levrt-files")
        await task.done()
        assert f"{sha}  {WORDLIST}" in out
        assert "progress: uploading words.txt (64.0 MiB)" in caplog.messages
        upload = next(m for m in caplog.messages if m.startswith("progress: uploaded words.txt"))
        figure(f"64 MiB wordlist: {upload.split(' in ')[-1]} upload, start (upload + fetch in the Pod) "
               f"{running:.1f} s; fetch: {fetched.strip()}")
        stored = await job.files.info(sha)
        assert stored is not None and stored["length"] == 64 * MB

        # The same wordlist in another job: nothing is uploaded (the bucket's upload date does not move).
        caplog.clear()
        async with session(settings=levrt_settings, kubeconfig=kube_cluster.kubeconfig):
            again = Cr(BUSYBOX, cmd=["sha256sum", WORDLIST], files={WORDLIST: words})
            task = await again.start()
            assert f"{sha}  {WORDLIST}" in await output_of(task, WORDLIST)
            await task.done()
        assert "progress: words.txt already stored (64.0 MiB)" in caplog.messages
        assert not any("uploading words.txt" in m for m in caplog.messages)
        assert (await job.files.info(sha) or {})["uploadDate"] == stored["uploadDate"]
    finally:
        await forget(job, sha)


async def test_an_unknown_digest_is_refused_before_anything_is_created(job: Any) -> None:
    before = len(job.tasks)
    with pytest.raises(FileSpecError, match="is not in the store: store the content first with `levrt put FILE`"):
        await Cr(BUSYBOX, cmd=["true"], files={"/x": Digest("0" * 64)}).start()
    assert len(job.tasks) == before
    pods = await job.kube.request("GET", f"/api/v1/namespaces/{job.settings.namespace}/pods",
                                  query={"labelSelector": job_selector(job.job_id)})
    assert [p["metadata"]["name"] for p in pods["items"]] == []


# -- results ----------------------------------------------------------------------------------------

RESULT_BYTES = 40 * MB


def big_result(seed: int) -> tuple[bytes, str]:
    """40 MB of bytes and a 40 MB str, the same on both sides of the wire."""
    import random

    rng = random.Random(seed)
    text = "".join(f"{rng.getrandbits(64):016x} open tcp/{n % 65536}\n" for n in range(RESULT_BYTES // 32))
    return rng.randbytes(RESULT_BYTES), text


@levrt.remote
def store_big_result(seed: int) -> None:
    data, text = big_result(seed)
    lev.set(target="10.0.0.1", raw=data)
    levrt.ctx.update({"report": text})
    back = lev.doc.get()  # inside the entry: as if stored inline
    lev.set(read_back=back is not None and back["raw"] == data and back["report"] == text)


async def test_a_40_mb_result_is_stored_apart_and_read_back_byte_for_byte(job: Any) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    data, text = big_result(seed)
    started = time.monotonic()
    doc = await Cr(BUSYBOX, "levrt.test/large@1.0", entry=store_big_result(seed))
    ran = time.monotonic() - started
    record = await doc.coll.find_one(doc.filter)
    shas = [record[k]["_levrt_blob"]["sha256"] for k in ("raw", "report")]
    try:
        started = time.monotonic()
        got = await doc.get()
        read = time.monotonic() - started
        assert got is not None and got["raw"] == data and got["report"] == text
        assert got["target"] == "10.0.0.1" and got["read_back"] is True
        assert await doc.get(projection=["raw"]) == {"raw": data}
        assert await doc.get(projection={"report": 1}) == {"report": text}
        figure(f"40 MiB bytes + {len(text.encode()) / MB:.0f} MiB str result: task {ran:.1f} s (store apart "
               f"included), doc.get() {read:.1f} s")
    finally:
        await forget(job, *shas)


# -- artifacts --------------------------------------------------------------------------------------

ARTIFACT_MB = 200


@levrt.remote
def write_and_put(megabytes: int) -> None:
    import hashlib as hl
    import resource
    import time as t

    digest = hl.sha256()
    with open("/tmp/out.bin", "wb") as out:
        for _ in range(megabytes):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            out.write(block)
    del block
    started = t.monotonic()
    lev.put("scan.out.bin", "/tmp/out.bin")
    lev.set(sha256=digest.hexdigest(), put_seconds=t.monotonic() - started,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


async def test_a_200_mb_artifact_is_streamed_with_little_memory_and_fetched_by_the_cli(
        job: Any, tmp_path: pathlib.Path, kube_cluster: Any) -> None:
    doc = await Cr(BUSYBOX, "levrt.test/large@1.0", entry=write_and_put(ARTIFACT_MB))
    got = await doc.get()
    assert got is not None
    sha = got["sha256"]
    try:
        assert got["peak_rss_mb"] < 100, got
        assert (await doc.artifacts())["scan.out.bin"] == {"sha256": sha, "size": ARTIFACT_MB * MB}
        out = tmp_path / "back.bin"
        env = {**os.environ, "LEVRT_STORE_URI": kube_cluster.store_uri, "LEVRT_NAMESPACE": job.settings.namespace,
               "KUBECONFIG": kube_cluster.kubeconfig}
        started = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "levrt", "get", "levrt.test/large@1.0", "--job", str(doc.job_id),
             "--task", str(doc.task_id), "--artifact", "scan.out.bin", "-o", str(out)],
            capture_output=True, text=True, env=env, timeout=600,
        )
        fetched = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert "wrote 200.0 MiB to" in done.stderr
        digest = hashlib.sha256()
        with open(out, "rb") as fh:
            while block := fh.read(MB):
                digest.update(block)
        assert digest.hexdigest() == sha
        figure(f"200 MiB artifact: lev.put {got['put_seconds']:.1f} s in the task (peak RSS "
               f"{got['peak_rss_mb']:.0f} MB), levrt get --artifact {fetched:.1f} s")
    finally:
        await forget(job, sha)
