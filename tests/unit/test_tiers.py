"""The folder decides the tier, and the teardown test is collected only when its folder is named.

Why: ``tests/teardown`` stops the test cluster, which may be serving another terminal. No
selection a developer would naturally type (``pytest``, ``-m "not cluster"``, ``-k teardown``,
``tests/smoke``) may run it; ``tests/run`` names the folder. And a cluster test must never land
in the fast tier because someone forgot a marker: its folder marks it. Checked with
``pytest --collect-only`` in a fresh interpreter (no fixture runs, nothing is started): one
subprocess runs every selection in turn, so the test costs one collection of the suite, not ten.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEARDOWN = "tests/teardown/test_teardown.py::test_down_leaves_no_process_mount_netns_veth_or_rule"
CLUSTER_PATHS = ("tests/smoke/", "tests/e2e/", "tests/chart/test_chart_cluster.py::")
FAST = "not cluster and not helm and not teardown and not kind"

SELECTIONS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "tests": ("tests",),
    "not-cluster": ("-m", "not cluster"),
    "fast": ("-m", FAST),
    "cluster-or-helm": ("-m", "cluster or helm"),
    "kind": ("-m", "kind"),
    "marker-teardown": ("-m", "teardown"),
    "keyword-teardown": ("-k", "teardown"),
    "smoke": ("tests/smoke",),
    "folder": ("tests/teardown",),
    "file": ("tests/teardown/test_teardown.py",),
    "node": (TEARDOWN,),
}
ASKED = {"folder", "file", "node"}

# Runs `pytest --collect-only ARGS` for each selection and writes {name: [exit code, selected node ids]}.
COLLECT = """
import json, sys
import pytest

class Selected:
    ids = []

    def pytest_collection_finish(self, session):
        self.ids = [item.nodeid for item in session.items]

out = {}
for name, args in json.loads(sys.argv[1]).items():
    selected = Selected()
    code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *args], plugins=[selected])
    out[name] = [int(code), selected.ids]
with open(sys.argv[2], "w") as fh:
    json.dump(out, fh)
"""


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    result = tmp_path_factory.mktemp("tiers") / "collected.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([sys.executable, "-c", COLLECT, json.dumps(SELECTIONS), str(result)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and result.exists(), done.stdout + done.stderr
    out: dict[str, list[str]] = {}
    for name, (code, ids) in json.loads(result.read_text()).items():
        assert code in (0, 5), f"pytest --collect-only {' '.join(SELECTIONS[name])}: exit {code}\n{done.stdout}"
        out[name] = ids
    return out


@pytest.mark.parametrize("selection", sorted(set(SELECTIONS) - ASKED))
def test_teardown_is_not_collected_unless_asked(collected: dict[str, list[str]], selection: str) -> None:
    assert not [node for node in collected[selection] if node.startswith("tests/teardown/")]


@pytest.mark.parametrize("selection", sorted(ASKED))
def test_teardown_is_collected_when_its_folder_is_named(collected: dict[str, list[str]], selection: str) -> None:
    assert collected[selection] == [TEARDOWN]


def test_the_folder_marks_cluster_tests(collected: dict[str, list[str]]) -> None:
    cluster = [node for node in collected["plain"] if node.startswith(CLUSTER_PATHS)]
    assert any(n.startswith("tests/smoke/") for n in cluster) and any(n.startswith("tests/e2e/") for n in cluster)
    assert set(cluster) <= set(collected["cluster-or-helm"])
    assert not set(cluster) & set(collected["fast"])
    assert not set(cluster) & set(collected["not-cluster"])
    assert collected["smoke"] and set(collected["smoke"]) <= set(cluster)


def test_the_fast_tier_is_the_unit_and_runtime_tests_and_the_pure_chart_checks(
    collected: dict[str, list[str]],
) -> None:
    fast = collected["fast"]
    # every test is in a tier, and in one only
    assert set(fast) | set(collected["cluster-or-helm"]) | set(collected["kind"]) == set(collected["plain"])
    assert not set(fast) & set(collected["cluster-or-helm"])
    assert not set(collected["kind"]) & (set(fast) | set(collected["cluster-or-helm"]))
    assert collected["kind"] and all(n.startswith("tests/kind/") for n in collected["kind"])
    assert {n.split("/")[1] for n in fast} == {"unit", "runtime", "chart"}
    assert all(n.startswith("tests/chart/test_chart.py::") for n in fast if n.startswith("tests/chart/"))
    assert collected["tests"] == collected["plain"]
