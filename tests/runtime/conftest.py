"""The runtime bundle and a busybox-only root filesystem holding it, for both runtime test modules."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from levrt import context
from tests.runtime import bundle_builder
from tests.runtime.chroot import BUSYBOX, make_rootfs


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The cached bundle (built once, cold in a few seconds): the ``/levrt`` of every task container."""
    if shutil.which("patchelf") is None or shutil.which("strip") is None:
        pytest.skip("needs patchelf and strip (tests/run installs them)")
    return Path(bundle_builder().build_bundle()) / "levrt"


@pytest.fixture(scope="module")
def rootfs(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root filesystem with nothing but busybox and the bundle (one per module: tests write into it)."""
    if os.geteuid() != 0 or shutil.which("chroot") is None or not BUSYBOX.exists():
        pytest.skip("needs root, chroot and busybox-static (tests/run installs them)")
    return make_rootfs(tmp_path_factory.mktemp("rootfs"), bundle)


@pytest.fixture
def isolated() -> Iterator[None]:
    """``main`` rebinds signals, ``sys.argv`` and ``lev``: put them back for the rest of the run."""
    saved = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), list(sys.argv),
             context.current_binding())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
        sys.argv[:] = saved[2]
        context.bind_task(saved[3])
