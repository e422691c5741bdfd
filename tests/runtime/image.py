"""The levrt runtime image for the test cluster: the product's own (``levrt._build.runtime``).

Why here: the test node's containerd is fed by ``tests.cluster.images.build_and_import``, which
skips the import when the node holds the same digest. Building the image with the code behind
``levrt image build`` and ``levrt up`` means the whole cluster tier runs on what users build.
"""

from __future__ import annotations

from levrt._build.runtime import runtime_image, runtime_ref
from tests.cluster.images import build_and_import

__all__ = ["build_runtime_image", "runtime_image", "runtime_ref"]


def build_runtime_image() -> str:
    """Build the runtime image from this checkout and import it into the test node; its ref."""
    return build_and_import(runtime_image())
