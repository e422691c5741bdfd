"""``levrt.upload``: store content in the store's file storage and get the ``Digest`` naming it.

Why a public module of its own: a ``Digest`` in ``Cr(files=...)`` names content stored before
(a 1 GB wordlist uploaded once, mounted by every task after), so users need a way to store it
from wherever they are: inside an entry (the task's own store connection), in an orchestration
(the job's), or from a plain script (a connection made like ``levrt get`` makes one:
``Settings.store_uri`` from the environment, else the platform's Secret). ``levrt put FILE`` is the same from a shell.
Import-light like ``levrt.run``: the client side loads when called.
"""

from __future__ import annotations

import os
from typing import IO

from levrt import _job, context
from levrt.cr import Digest
from levrt.errors import FileSpecError
from levrt.settings import Settings

__all__ = ["upload"]

Source = bytes | str | os.PathLike[str]


async def upload(source: Source, *, settings: Settings | None = None, kubeconfig: str | None = None) -> Digest:
    """Store ``source`` and return its ``Digest``: ``bytes`` (content), ``str`` (UTF-8 text) or a
    path (``pathlib.Path``, streamed from disk). Content stored already is not sent again.

    Use the Digest in ``Cr(files={"/usr/share/wordlists/big.txt": digest})``: tasks mount it
    without uploading anything. ``settings``/``kubeconfig`` only matter outside a job.
    """
    if isinstance(source, bytearray | memoryview):
        source = bytes(source)
    if not isinstance(source, bytes | str | os.PathLike):
        raise FileSpecError(
            f"levrt.upload({source!r:.60}): give bytes (content), str (UTF-8 text) or a path "
            "(pathlib.Path)."
        )
    binding = context.current_binding()
    if binding is not None:  # inside an entry: the task's own store connection (synchronous)
        import asyncio  # an async entry has its loop running already; `import levrt` needs none

        sync_source: bytes | os.PathLike[str] | IO[bytes] = (
            source.encode("utf-8") if isinstance(source, str) else source
        )
        return Digest(await asyncio.to_thread(binding.upload, sync_source))
    runner = _job.current_or_none()
    if runner is not None:
        return Digest(await runner.upload(source))
    from levrt._clients import blobs  # the store client loads only when content is uploaded from here

    async with blobs.connect(settings or Settings.from_env(), kubeconfig=kubeconfig) as files:
        from levrt._core.uploads import Uploads  # as above: the client side, loaded on use

        return Digest(await Uploads(files).upload(source))
