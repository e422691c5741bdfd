"""A clear error for compiled modules built for another Python, found on the entry's ``sys.path``.

Why: levrt 1.x injected Python 3.10, and tool authors reach packages installed in the image with
``sys.path.append("/usr/local/lib/python3.10/site-packages")``. levrt injects the client's Python
instead. Pure-Python packages found that way import fine; a compiled module built for another
minor version (``_yaml.cpython-310-x86_64-linux-gnu.so``) is invisible to this interpreter, which
then says only "No module named ...". This finder runs last, only for imports that already
failed, and turns that into a message saying which Python the runtime is and what to do.
Standard library only.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["OtherPythonFinder", "install"]

_TAG = re.compile(r"\.cpython-(\d)(\d+)")


class OtherPythonFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: an import no other finder satisfied, but that a build for another
    Python would have, fails with an ``ImportError`` that says so."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        leaf = fullname.rpartition(".")[2]
        ours = f"{sys.version_info.major}.{sys.version_info.minor}"
        for folder in path if path is not None else sys.path:
            try:
                names = os.listdir(folder or ".")
            except OSError:
                continue
            for name in names:
                tag = _TAG.match(name[len(leaf):]) if name.startswith(leaf + ".") and name.endswith(".so") else None
                if tag is None or f"{tag.group(1)}.{tag.group(2)}" == ours:
                    continue
                theirs = f"{tag.group(1)}.{tag.group(2)}"
                raise ImportError(
                    f"{fullname} is compiled for Python {theirs} ({os.path.join(folder, name)}), but levrt runs "
                    f"entries with its own Python {ours}, which cannot load it. Pure-Python packages from the "
                    f"image work; for compiled ones install a build for Python {ours} in the image, or run the "
                    "image's own interpreter in a subprocess (subprocess.run(['python3', ...])).",
                    name=fullname,
                    path=os.path.join(folder, name),
                )
        return None


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, OtherPythonFinder) for finder in sys.meta_path):
        sys.meta_path.append(OtherPythonFinder())
