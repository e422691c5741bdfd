"""Helpers every tier shares: one way to build a task's objects.

Why one ``build``: the tests of the builder, the golden snapshots, the validation cases and the
chart's NetworkPolicy check all need a Cr's Pod; building it the way submit does (the local
``Path`` files read first) in one place keeps them from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from levrt import Cr
from levrt._shapes.build import TaskObjects, build_task, read_files
from levrt.settings import Settings

__all__ = ["build"]


def build(
    cr: Cr,
    *,
    job: int = 1,
    task: int = 0,
    collection: str = "default",
    settings: Settings | None = None,
    file_contents: Mapping[str, bytes] | None = None,
    attempt: int = 0,
) -> TaskObjects:
    """The objects of ``cr`` as task ``task`` of job ``job`` (``attempt``: a retry's); default ``Settings()``.

    ``file_contents`` defaults to ``read_files(cr)``, as at submit time; pass ``{}`` to build
    without reading them.
    """
    return build_task(
        cr,
        job=job,
        task=task,
        collection=collection,
        settings=Settings() if settings is None else settings,
        file_contents=read_files(cr) if file_contents is None else file_contents,
        attempt=attempt,
    )


class Config:
    """What HttpTransport reads of a kubeconfig: the server and its credentials (none here)."""

    def __init__(self, host: str) -> None:
        self.host = host

    async def auth_settings(self) -> dict[str, Any]:
        return {}
