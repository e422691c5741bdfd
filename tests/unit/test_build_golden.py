"""Golden snapshots of the objects the builder makes; regenerate with LEVRT_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
import yaml

from tests.unit.golden_cases import golden_cases, snapshot

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
CASES = golden_cases()


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so file contents and scripts read naturally."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not value.startswith((" ", "\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(
        docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=False
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    docs = snapshot(CASES[name])
    text = dump(docs)
    assert list(yaml.safe_load_all(text)) == docs  # the YAML form loses nothing
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("LEVRT_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run LEVRT_UPDATE_GOLDEN=1 pytest tests/unit"
    assert text == path.read_text(), (
        f"{name} changed; if intended, run LEVRT_UPDATE_GOLDEN=1 pytest tests/unit"
    )


def test_no_stray_golden_files() -> None:
    stray = {p.stem for p in GOLDEN.glob("*.yaml")} - set(CASES)
    assert not stray, f"golden files without a case: {stray}"


def test_golden_cases_are_deterministic(tmp_path: pathlib.Path) -> None:
    again = golden_cases(tmp_path)
    assert {n: snapshot(o) for n, o in again.items()} == {n: snapshot(o) for n, o in CASES.items()}
