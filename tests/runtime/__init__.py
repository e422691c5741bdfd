"""Tests and image building for the injected runtime (``levrt.runtime`` + the bundle)."""

from __future__ import annotations

from types import ModuleType

from levrt._build import bundle


def bundle_builder() -> ModuleType:
    """The bundle builder, ``levrt._build.bundle`` (the product's: ``levrt image build`` and the
    Dockerfile run the same code), as the module the runtime tests have always called through."""
    return bundle
