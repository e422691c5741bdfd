"""Helpers every tier shares: one way to build a task's objects.

Why one ``build``: the tests of the builder, the golden snapshots, the validation cases and the
chart's NetworkPolicy check all need a Cr's Pod; building it the way submit does (the local
``Path`` files read first, then planned) in one place keeps them from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from levrt import Cr, Digest
from levrt._core.localfiles import read_local_files
from levrt._shapes.build import TaskObjects, build_task
from levrt._shapes.files import plan_files
from levrt.settings import Settings

__all__ = ["build"]


def build(
    cr: Cr,
    *,
    job: int = 1,
    task: int = 0,
    collection: str = "default",
    settings: Settings | None = None,
    local_files: Mapping[str, bytes | Digest] | None = None,
    attempt: int = 0,
) -> TaskObjects:
    """The objects of ``cr`` as task ``task`` of job ``job`` (``attempt``: a retry's); default ``Settings()``.

    ``local_files`` (what the local ``Path`` files hold) defaults to ``read_local_files(cr)``, as at
    submit time; pass ``{}`` to build without reading them.
    """
    return build_task(
        cr,
        job=job,
        task=task,
        collection=collection,
        settings=Settings() if settings is None else settings,
        plan=plan_files(cr, read_local_files(cr) if local_files is None else local_files),
        attempt=attempt,
    )


class Config:
    """What HttpTransport reads of a kubeconfig: the server and its credentials (none here)."""

    def __init__(self, host: str) -> None:
        self.host = host

    async def auth_settings(self) -> dict[str, Any]:
        return {}
