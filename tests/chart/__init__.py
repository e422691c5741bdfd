"""Tests of charts/levrt and its plain-manifest twin k8s/: rendered with helm, no cluster needed.

Shared helpers: the helm binary (built from pinned modules by tests/cluster) and rendering.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "levrt"
K8S = ROOT / "k8s"


def helm_binary() -> str:
    """The helm binary tests/cluster builds (a no-op when its cache already holds it)."""
    from tests.cluster import gotools

    gotools.build(gotools.tool("helm"))
    return str(gotools.binary("helm"))


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def render_text(helm: str, *sets: str, namespace: str = "levrt") -> str:
    """``helm template levrt charts/levrt --namespace NS`` with ``--set`` arguments ``sets``."""
    args = [a for s in sets for a in ("--set", s)]
    result = run_helm(helm, "template", "levrt", str(CHART), "--namespace", namespace, *args)
    if result.returncode != 0:
        raise AssertionError(f"helm template {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(helm: str, *sets: str, namespace: str = "levrt") -> list[dict[str, Any]]:
    return parse(render_text(helm, *sets, namespace=namespace))


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects keyed by (kind, name); fails on duplicates."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in out, f"duplicate object {key}"
        out[key] = doc
    return out


def render_script() -> ModuleType:
    """k8s/render.py as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("levrt_k8s_render", K8S / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
