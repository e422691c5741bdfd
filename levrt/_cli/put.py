"""``levrt put FILE...``: store files in the store's file storage and print their Digests.

Why a command: a wordlist of a gigabyte is uploaded once, from a shell, and then named by its
``Digest`` in any number of ``Cr(files=...)`` without travelling again. The output is
``sha256sum``'s (``<digest>  <file>``), so scripts can read it; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import time

from levrt._cli.base import EXIT_OK, CliError, Command, add_cluster_options, settings_of
from levrt._clients import blobs
from levrt._stored import human_size
from levrt.cr import MAX_FILE_BYTES

__all__ = ["PUT"]

PROGRESS_STEP = 0.25
"""A large upload reports each quarter done."""


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="local files to store")
    add_cluster_options(parser)


def put_command(args: argparse.Namespace) -> int:
    paths = [pathlib.Path(name) for name in args.files]
    for path in paths:  # every name checked before anything is sent
        if not path.is_file():
            raise CliError(f"{str(path)!r} is not a file (levrt put stores files one by one).")

    async def go() -> None:
        async with blobs.connect(settings_of(args), kubeconfig=args.kubeconfig) as files:
            for path in paths:
                size = path.stat().st_size
                large = size > MAX_FILE_BYTES
                if large:
                    print(f"progress: uploading {path.name} ({human_size(size)})", file=sys.stderr, flush=True)
                started = time.monotonic()
                stored = await files.upload(path, name=path.name, kind="put",
                                            on_progress=_reporter(path.name) if large else None)
                if not stored.uploaded:
                    print(f"{path.name}: already stored", file=sys.stderr, flush=True)
                elif large:
                    print(f"progress: uploaded {path.name} ({human_size(stored.size)}) in "
                          f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
                print(f"{stored.sha256}  {path}", flush=True)

    asyncio.run(go())
    return EXIT_OK


def _reporter(name: str) -> blobs.Progress:
    shown = [0.0]

    def report(done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if fraction >= shown[0] + PROGRESS_STEP and fraction < 1.0:
            shown[0] = fraction - fraction % PROGRESS_STEP
            print(f"progress: {name} {fraction:.0%} ({human_size(done)} of {human_size(total)})",
                  file=sys.stderr, flush=True)

    return report


PUT = Command("put", "store files in the store's file storage and print their Digests", _arguments, put_command)
