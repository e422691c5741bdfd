"""Tests and image building for the injected runtime (``levrt.runtime`` + the bundle)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BUILD_BUNDLE = Path(__file__).resolve().parents[2] / "images" / "runtime" / "build_bundle.py"


@functools.cache
def bundle_builder() -> ModuleType:
    """``images/runtime/build_bundle.py`` as a module: it is a standalone script (the Dockerfile
    copies only it), so it is loaded from its path rather than imported from a package."""
    spec = importlib.util.spec_from_file_location("levrt_build_bundle", BUILD_BUNDLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
