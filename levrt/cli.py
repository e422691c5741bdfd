"""Shim for the console script ``levrt = "levrt.cli:main"``; the command lives in ``levrt.commands``.

Why a shim that is also callable: ``levrt.cli`` is the public argv builder (``levrt.cli("-sV")``).
Importing this submodule binds the package attribute ``cli`` to the module, so the module itself
must behave like the function. Once the console script points at ``levrt.commands:main``, this
file can go.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from levrt.argv import cli as _cli
from levrt.commands import main

__all__ = ["main"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> list[str]:
        return _cli(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
