"""What levrt 1.x tool packages rely on, end to end on the real cluster: ``ctx.update``, optional
files left as None, platform images (``.user.tool:tag``), ``lev.doc`` as the job's own record, and
``t = c.start(mode(x))`` awaited later with ``r.all()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import levrt
from levrt import Concurrent, Cr, ctx, lev
from levrt.errors import TaskFailed
from tests.e2e.conftest import BUSYBOX

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "platform.levrt.local/tools"


def words_mode(target: str, words: bytes | None = None) -> Cr:
    """A 1.x mode with an optional file parameter, storing its result dict with ctx.update."""

    @levrt.remote
    def entry() -> None:
        import os

        found = {"target": target, "words": None}
        if os.path.exists("/word_list"):
            with open("/word_list") as fh:
                found["words"] = fh.read().split()
        ctx.update(found)
        ctx.update({"done": True})

    return Cr(BUSYBOX, "compat/words@1.0", entry=entry(), files={"/word_list": words})


async def test_update_and_optional_files(job: Any) -> None:
    with_file = await words_mode("a.example", b"admin root\n")
    assert await with_file.get() == {"target": "a.example", "words": ["admin", "root"], "done": True}
    without = await words_mode("b.example")
    assert await without.get() == {"target": "b.example", "words": None, "done": True}


async def test_a_value_that_cannot_be_stored_fails_the_task_naming_its_key(job: Any) -> None:
    @levrt.remote
    def entry() -> None:
        ctx.update({"ports": [22], "hosts": {"10.0.0.1", "10.0.0.2"}})

    with pytest.raises(TaskFailed) as info:
        await Cr(BUSYBOX, entry=entry())
    assert "'hosts' (set) cannot be stored" in str(info.value)


async def test_lev_doc_is_the_jobs_own_record(job: Any, kube_cluster: Any) -> None:
    await lev.doc.set(stage="scanning", progress=0.5)
    await lev.doc.set(progress=1.0)
    assert await lev.doc.get() == {"stage": "scanning", "progress": 1.0}
    assert lev.job_id == job.job_id
    out = subprocess.run(
        [sys.executable, "-m", "levrt", "get", "jobs", "--job", str(job.job_id)], cwd=REPO, check=True,
        capture_output=True, text=True,
        env=dict(os.environ, KUBECONFIG=kube_cluster.kubeconfig, LEVRT_STORE_URI=kube_cluster.store_uri),
    ).stdout
    assert [{k: v for k, v in r.items() if k != "_id"} for r in json.loads(out)] == [
        {"stage": "scanning", "progress": 1.0}
    ]


def banner(host: str) -> Cr:
    @levrt.remote
    def entry() -> None:
        lev.set(host=host, banner=f"hello from {host}")

    return Cr(BUSYBOX, "compat/banner@1.0", entry=entry())


async def test_tasks_started_in_concurrent_are_awaited_later(job: Any) -> None:
    async with Concurrent(limit=2) as c:
        started = [c.start(banner(h)) for h in ("h1", "h2", "h3")]
    last = await started[-1]
    records = [rec async for rec in last.all()]
    assert sorted(r["host"] for r in records) == ["h1", "h2", "h3"]
    assert all(r["banner"] == f"hello from {r['host']}" for r in records)


async def test_a_platform_image_runs_from_the_registry(kube_cluster: Any, levrt_settings: Any) -> None:
    if not kube_cluster.own:
        pytest.skip("needs this machine's test node to give an image a registry name")
    from levrt.run import session
    from tests.cluster.images import tag

    tag(BUSYBOX, f"{REGISTRY}/alice.busybox:{BUSYBOX.rsplit(':', 1)[1]}")

    @levrt.remote
    def entry() -> None:
        lev.set(ran=True)

    cr = Cr(f".alice.busybox:{BUSYBOX.rsplit(':', 1)[1]}", entry=entry())
    settings = levrt_settings.replace(image_registry=REGISTRY)
    async with session(settings=settings, kubeconfig=kube_cluster.kubeconfig):
        task = await cr.start()
        assert (await task.done()) is not None
        assert await (await task.done()).get() == {"ran": True}
    unset = levrt_settings.replace(image_registry=None)
    async with session(settings=unset, kubeconfig=kube_cluster.kubeconfig) as bare:
        with pytest.raises(levrt.SettingsError, match="LEVRT_IMAGE_REGISTRY"):
            await cr.start()
        assert bare.tasks == []  # refused before anything was created
