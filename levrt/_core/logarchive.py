"""A task's logs kept in the store when its Pod is gone: written at the task's end, read by ``levrt logs``.

Why: a task's output is its evidence (a scanner's findings, a failed entry's traceback), and the
Pod that holds it is deleted as the task ends. So at each task's end the engine hands the ended Pod
to ``LogArchive.begin``: every container's log (the init containers such as ``levrt-files``, the
services, which run as native sidecars, and ``main``) is read and written to the internal
collection ``levrt_logs``, one document per task::

    {_id: "job.task", job, task, pod, archived,
     containers: {name: {text, bytes, file?, cut?}}}

``text`` is inline, at most ``INLINE_BYTES`` for the whole task (``main`` first); a log larger than
what is left of that is stored whole in the file storage (``file``: its sha256) and ``text`` holds
its last part, where a traceback is. Nothing is cut silently: ``cut`` says where the archive is
incomplete (the apiserver's read limit, the kubelet's rotation, a failed read or write).

Why the engine is never held up by it: only reading must happen before the Pod is deleted, and
that runs beside the engine's own end of the task and is waited for at most ``READ_SECONDS``; the
write goes on in the background (``close`` waits for what is left, bounded). Any failure is a
warning, never the task's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

from levrt._clients import pods
from levrt._clients.blobs import FileStore
from levrt._clients.kube import Kube
from levrt._clients.store import Store
from levrt.errors import LevrtError

__all__ = [
    "INLINE_BYTES",
    "READ_LIMIT_BYTES",
    "LogArchive",
    "archive_document",
    "archived_text",
    "container_names",
    "read_archive",
]

log = logging.getLogger("lev")

INLINE_BYTES = 256 * 1024
"""Log text kept inline in a task's archive document, all containers together; the rest goes to file storage."""
READ_LIMIT_BYTES = 64 * 1024 * 1024
"""The most read of one container's log (``limitBytes``): a runaway log must not fill the client's memory."""
ROTATION_BYTES = 10 * 1024 * 1024
"""The kubelet's default ``containerLogMaxSize``: past it the log is rotated and the apiserver
returns only the newest file, so a log this large may have lost its beginning."""
READ_SECONDS = 10.0
"""How long a task's end waits for its logs to be read before its Pod is deleted."""
WRITE_SECONDS = 30.0
"""How long the archive's write to the store may take before it is given up (a warning)."""
MAIN = "main"


def container_names(pod: Mapping[str, Any]) -> list[str]:
    """The containers of a Pod whose logs are archived: ``main`` first, then the services and init
    containers in the Pod's order."""
    spec = pod.get("spec") or {}
    names = [str(c["name"]) for key in ("containers", "initContainers") for c in spec.get(key) or [] if c.get("name")]
    return sorted(dict.fromkeys(names), key=lambda name: name != MAIN)


def _tail_bytes(data: bytes, size: int) -> str:
    """The last ``size`` bytes of ``data`` as text (a character split at the start is dropped)."""
    return data[len(data) - size:].decode("utf-8", errors="ignore") if size > 0 else ""


def archive_document(job: int, task: int, pod: str, logs: Mapping[str, str], *, cuts: Mapping[str, str] | None = None,
                     stored: Mapping[str, str] | None = None, now: dt.datetime | None = None,
                     inline_bytes: int = INLINE_BYTES) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The archive document of one task (pure), and the logs that go to file storage by container.

    ``stored`` names, by container, the sha256 under which its whole log is already in file
    storage; a log that overflows the inline budget and is not in ``stored`` is returned in the
    second value for the caller to store (then call again with its sha256, or with a ``cut``)."""
    cuts, stored = dict(cuts or {}), dict(stored or {})
    left = inline_bytes
    containers: dict[str, dict[str, Any]] = {}
    overflow: dict[str, bytes] = {}
    for name in sorted(logs, key=lambda n: n != MAIN):
        data = logs[name].encode()
        entry: dict[str, Any] = {"bytes": len(data)}
        if len(data) <= left:
            entry["text"] = logs[name]
            left -= len(data)
        else:
            entry["text"] = _tail_bytes(data, left)
            left = 0
            if name in stored:
                entry["file"] = stored[name]
            else:
                overflow[name] = data
        if name in cuts:
            entry["cut"] = cuts[name]
        containers[name] = entry
    doc = {"job": job, "task": task, "pod": pod,
           "archived": now or dt.datetime.now(dt.UTC), "containers": containers}
    return doc, overflow


def _read_cut(text: str) -> str | None:
    """Where the apiserver's answer may not be the whole log."""
    size = len(text.encode())
    if size >= READ_LIMIT_BYTES:
        return (f"only the first {READ_LIMIT_BYTES // (1024 * 1024)} MiB were read (limitBytes); "
                "the output after them is not archived")
    if size >= ROTATION_BYTES:
        return (f"the log is {size // (1024 * 1024)} MiB: the kubelet rotates logs at containerLogMaxSize "
                "(10 MiB by default) and the apiserver returns only the newest file, so its beginning may be missing")
    return None


class LogArchive:
    """The log archive of one job's tasks: ``begin`` at a task's end, ``close`` at the job's."""

    def __init__(self, kube: Kube, store: Store, files: FileStore, *, namespace: str, job: int,
                 read_seconds: float = READ_SECONDS, write_seconds: float = WRITE_SECONDS,
                 inline_bytes: int = INLINE_BYTES) -> None:
        self.kube, self.store, self.files = kube, store, files
        self.namespace, self.job = namespace, job
        self.read_seconds, self.write_seconds = read_seconds, write_seconds
        self.inline_bytes = inline_bytes
        self._pending: set[asyncio.Task[None]] = set()

    def begin(self, task: int, pod: Mapping[str, Any], *, carried: Mapping[str, str] | None = None
              ) -> asyncio.Future[None]:
        """Start archiving the logs of the ended Pod ``pod`` of task ``task``; the future is done once
        they are read (the Pod may be deleted then). ``carried``: logs already at hand by container
        (``main``'s, from its runtime's end report), not read again. Never raises."""
        read: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        name = str(pod.get("metadata", {}).get("name", ""))
        carried = dict(carried or {})
        unread = [container for container in container_names(pod) if container not in carried]
        self._in_background(self._archive(task, name, unread, read, carried), f"levrt-logs-{self.job}.{task}")
        return read

    def keep(self, ended: Mapping[int, tuple[str, Mapping[str, str], Mapping[str, str]]]) -> None:
        """Archive logs read elsewhere (warm Pods' entries bring their own output), in the background:
        ``ended`` is ``{task: (pod, logs, cuts)}``, written in one request (a log too large to keep
        inline goes through the file storage, as a Pod's does)."""
        async def write() -> None:
            inline: dict[tuple[int, int], dict[str, Any]] = {}
            for task, (pod, logs, cuts) in ended.items():
                doc, overflow = archive_document(self.job, task, pod, logs, cuts=cuts, inline_bytes=self.inline_bytes)
                if overflow:
                    await self._write(task, pod, dict(logs), dict(cuts))
                else:
                    inline[(self.job, task)] = doc
            if inline:
                await self.store.put_logs_many(inline)

        async def bounded() -> None:
            try:
                async with asyncio.timeout(self.write_seconds):
                    await write()
            except Exception as exc:  # the archive is a courtesy: never the task's failure
                log.warning("the logs of tasks %s of job %d were not archived: %s", sorted(ended), self.job, exc)

        self._in_background(bounded(), f"levrt-logs-{self.job}")

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` beside the engine; ``close`` waits for it."""
        running = asyncio.get_running_loop().create_task(work, name=name)
        self._pending.add(running)
        running.add_done_callback(self._pending.discard)

    async def cut_short(self, doomed: list[dict[str, Any]], unfinished: Mapping[str, int]) -> None:
        """Read the logs of the Pods in ``doomed`` whose tasks did not end (``unfinished``: Pod name
        to task) before the job's end deletes them: a cancelled scan's output so far is evidence too.
        All at once, each read bounded (``wait_read``)."""
        reads = [self.begin(unfinished[pod["metadata"]["name"]], pod) for pod in doomed
                 if pod["metadata"]["name"] in unfinished]
        await asyncio.gather(*(self.wait_read(read) for read in reads))

    async def wait_read(self, read: asyncio.Future[None]) -> None:
        """Wait until ``begin``'s logs are read, at most ``read_seconds`` (then the Pod goes anyway)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(read), self.read_seconds)

    async def close(self) -> None:
        """Let the archives still being written finish (each is bounded by its timeouts)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _read(self, pod: str, container: str) -> tuple[str, str | None]:
        try:
            text = await pods.logs(self.kube, self.namespace, pod, container=container, limit_bytes=READ_LIMIT_BYTES)
        except LevrtError as exc:
            return "", f"its log could not be read ({str(exc).splitlines()[0][:200] if str(exc) else exc!r})"
        return text, _read_cut(text)

    async def _archive(self, task: int, pod: str, containers: list[str], read: asyncio.Future[None],
                       carried: Mapping[str, str]) -> None:
        try:
            logs: dict[str, str] = dict(carried)
            cuts: dict[str, str] = {}
            reads = {name: asyncio.ensure_future(self._read(pod, name)) for name in containers}
            try:
                if reads:
                    await asyncio.wait(reads.values(), timeout=self.read_seconds)
            finally:
                if not read.done():
                    read.set_result(None)
            for name, reading in reads.items():
                if reading.done():
                    logs[name], cut = reading.result()
                else:
                    reading.cancel()
                    logs[name], cut = "", f"its log was not read within {self.read_seconds:g} s"
                if cut:
                    cuts[name] = cut
            async with asyncio.timeout(self.write_seconds):
                await self._write(task, pod, logs, cuts)
        except Exception as exc:  # the archive is a courtesy: never the task's failure
            log.warning("the logs of task %d.%d were not archived: %s", self.job, task, exc)
        finally:
            if not read.done():
                read.set_result(None)

    async def _write(self, task: int, pod: str, logs: dict[str, str], cuts: dict[str, str]) -> None:
        doc, overflow = archive_document(self.job, task, pod, logs, cuts=cuts, inline_bytes=self.inline_bytes)
        stored: dict[str, str] = {}
        for name, data in overflow.items():
            try:
                kept = await self.files.upload(data, name=f"logs of {pod}/{name}", kind="logs")
            except Exception as exc:
                inline = len(doc["containers"][name]["text"].encode())
                cuts[name] = (f"only its last {inline} of {len(data)} bytes are archived: the file storage "
                              f"refused the rest ({str(exc).splitlines()[0][:200]})")
                log.warning("task %d.%d: the log of container %s is archived cut: %s", self.job, task, name, exc)
            else:
                stored[name] = kept.sha256
        if overflow:
            doc, _ = archive_document(self.job, task, pod, logs, cuts=cuts, stored=stored, now=doc["archived"],
                                      inline_bytes=self.inline_bytes)
        await self.store.put_logs(self.job, task, doc)


async def read_archive(store: Store, job: int, task: int) -> dict[str, Any] | None:
    """The archive document of task ``job.task``, or None when there is none."""
    return await store.get_logs(job, task)


async def archived_text(files: FileStore, entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """A container's archived log (its whole text, read from file storage when it overflowed there),
    and where it is incomplete (None: it is whole)."""
    text = str(entry.get("text") or "")
    cut = entry.get("cut")
    sha = entry.get("file")
    if sha:
        try:
            text = (await files.read(str(sha))).decode("utf-8", errors="replace")
        except LevrtError as exc:
            note = f"the whole log ({entry.get('bytes')} bytes) could not be read from file storage ({exc}); " \
                   f"only its last {len(text.encode())} bytes are shown"
            cut = f"{cut}; {note}" if cut else note
    return text, (str(cut) if cut else None)
