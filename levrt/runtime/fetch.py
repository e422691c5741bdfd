"""``python3 -m levrt.runtime.fetch DIR SHA256...``: the ``levrt-files`` init container of a Pod.

Why: a file too large for a ConfigMap (or named by a ``Digest``) lives in the store's file
storage, and the task's image may have no Python and no levrt (an image without an entry). So a
first init container, of the runtime image, streams each content into the emptyDir ``DIR``
(``/levrt-files/<sha256>``), checking the sha256 as it writes, and the containers mount those
files read-only at their paths (``subPath``) before they start. A file is renamed into place
only once complete and verified. Store address: the same variables as for entries
(``levrt.podenv``: ``STORE_URI_ENV``, ``DATABASE_ENV``).

Exit codes: 0 every file is in place; 1 a file is missing from the store or damaged, or the
store is unreachable (the reason goes to the termination message); 2 bad arguments.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from levrt._stored import human_size, is_sha256
from levrt.podenv import DATABASE_ENV, DEFAULT_DATABASE, FETCH_MODULE, STORE_URI_ENV
from levrt.runtime.blobs import Bucket
from levrt.runtime.termination import termination_log

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         connect: Callable[[str], Any] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    log = termination_log(env)
    if len(argv) < 2 or not all(is_sha256(sha) for sha in argv[1:]):
        print(f"usage: python3 -m {FETCH_MODULE} DIR SHA256...; got {argv!r}", file=sys.stderr)
        return 2
    folder, wanted = argv[0], argv[1:]
    uri = env.get(STORE_URI_ENV)
    if not uri:
        return _fail(log, f"levrt-files: {STORE_URI_ENV} is empty; the levrt-store Secret (key uri) must exist "
                          "in the task's namespace: install the levrt chart.")
    client = (connect or _mongo_client)(uri)
    try:
        bucket = Bucket(client[env.get(DATABASE_ENV) or DEFAULT_DATABASE])
        for sha in wanted:
            target = os.path.join(folder, sha)
            if os.path.exists(target):
                continue  # the same content at two paths: fetched once
            started = time.monotonic()
            part = os.path.join(folder, f".{sha}.part")
            try:
                with open(part, "wb") as out:
                    size = bucket.copy_to(sha, out)
            except Exception as exc:
                _remove(part)
                return _fail(log, f"levrt-files: {sha} could not be fetched: {exc}")
            os.chmod(part, 0o444)
            os.replace(part, target)
            print(f"levrt-files: {sha} ({human_size(size)}) in {time.monotonic() - started:.1f}s", flush=True)
    finally:
        client.close()
    return 0


def _fail(log: str, reason: str) -> int:
    print(reason, file=sys.stderr, flush=True)
    try:
        with open(log, "w") as fh:
            fh.write(reason[:1024])
    except OSError:
        pass  # outside Kubernetes there is no termination log; stderr has it
    return 1


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _mongo_client(uri: str) -> Any:
    # The container does nothing else: pymongo is what it is for.
    from pymongo import MongoClient

    return MongoClient(uri, serverSelectionTimeoutMS=30_000, appname="levrt-files")


if __name__ == "__main__":
    sys.exit(main())
