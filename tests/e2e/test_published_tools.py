"""The tool registry on the real cluster (issue 23, items 1-2): the demo packages published, found by
text, tag and category, and a workflow run by name from the registry's copy in an orchestration
Pod, with no local files; an archive changed behind the registry's back is refused, nothing run.

Why on the cluster: the registry lives in the real store (FerretDB: its regular expressions and
array matches, not the fake's), and the run by name is an orchestration Pod that takes the archive
from the store itself, in the cluster, from a directory with no copy of the tools.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pymongo

from levrt._core.registry import REGISTRY_DATABASE, TOOLS
from tests.e2e.conftest import BUSYBOX

REPO = Path(__file__).resolve().parents[2]


def test_published_tools_are_found_and_run_by_name_from_the_registry(cli_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)

    def levrt(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300)

    store: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(cli_env["LEVRT_STORE_URI"])
    store[REGISTRY_DATABASE][TOOLS].delete_many({"namespace": "demo"})  # a rerun starts from none
    try:
        for tool in ("portscan", "banner"):
            published = levrt("publish", f"examples/lev/demo/{tool}")
            assert published.returncode == 0, published.stderr
            assert published.stdout.startswith(f"published demo/{tool}@")
        again = levrt("publish", "examples/lev/demo/banner")
        assert "nothing changed" in again.stdout, again.stdout + again.stderr

        def found(*argv: str) -> list[str]:
            listed = levrt("tools", *argv, "-o", "json")
            assert listed.returncode == 0, listed.stderr
            return [row["name"] for row in json.loads(listed.stdout) if row["name"].startswith("demo/")]

        assert found() == ["demo/banner", "demo/portscan"]
        assert found("http probe") == ["demo/portscan"]
        assert found("--tag", "tcp") == ["demo/portscan"]
        assert found("--cat", "TA0007") == ["demo/banner", "demo/portscan"]
        assert found("--cat", "fingerprint") == ["demo/banner"]

        # From an empty directory: nothing of the tools is on this machine's path.
        run = levrt("run", "demo/portscan:sweep", "chunks=1", "--no-progress", "-e",
                    f"LEVRT_EXAMPLE_IMAGE={BUSYBOX}", cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        out = run.stdout
        summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
        assert summary["open"] == [2222, 8080], summary
        assert summary["banners"]["2222"] == "SSH-2.0-levrt-demo"
        job = int(re.search(r"^job: (\d+)$", run.stdout + run.stderr, re.M).group(1))  # type: ignore[union-attr]
        ps = levrt("ps", "-o", "json", "--limit", "5")
        [row] = [r for r in json.loads(ps.stdout) if r["job"] == job]
        record = store[REGISTRY_DATABASE][TOOLS].find_one({"name": "demo/portscan"})
        assert record is not None
        assert (row["where"], row["state"], row["target"]) == (
            "in-cluster", "succeeded", f"demo/portscan@{record['version']}:sweep")

        # The stored archive changed behind the registry's back: refused before anything runs.
        chunks = store[REGISTRY_DATABASE]["levrt_files.chunks"]
        chunk = chunks.find_one({"files_id": record["sha256"]})
        assert chunk is not None
        data = bytes(chunk["data"])
        chunks.update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes([data[0] ^ 1]) + data[1:]}})
        refused = levrt("run", "demo/portscan:sweep", "--no-progress", cwd=tmp_path)
        assert refused.returncode == 1 and "damaged" in refused.stderr, refused.stderr[-2000:]
        assert "job:" not in refused.stderr
        # Publishing the same tree again writes the damaged copy again rather than trust it.
        repaired = levrt("publish", "examples/lev/demo/portscan")
        assert "nothing changed" in repaired.stdout, repaired.stdout + repaired.stderr
        assert bytes(chunks.find_one({"_id": chunk["_id"]})["data"]) == data  # type: ignore[index]
    finally:
        store[REGISTRY_DATABASE][TOOLS].delete_many({"namespace": "demo"})
        store.close()
