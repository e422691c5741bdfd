"""Schedules on the real cluster (issue 25, item 3): a schedule every minute runs three times in
three to four minutes, each run an ordinary job whose record names the schedule, never two at once
(a run started by hand while one goes is refused), and suspend, list and delete act on the CronJob.

Why on the cluster: the runs are started by Kubernetes' own CronJob controller, in orchestration Pods
under the chart's account, and their jobs open and close like any other.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
FLOW = """\
import os

from levrt import Cr


async def main(seconds: int = 20):
    await Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], cmd=["sleep", str(seconds)])
    return {"slept": seconds}
"""


def levrt(cli_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=cli_env, capture_output=True,
                          text=True, timeout=120)


def runs(cli_env: dict[str, str], name: str) -> list[dict[str, Any]]:
    listed = levrt(cli_env, "ps", "--schedule", name, "-o", "json", "--all")
    assert listed.returncode == 0, listed.stderr
    return sorted(json.loads(listed.stdout or "[]"), key=lambda row: row["job"])


def test_a_schedule_every_minute_runs_three_times_never_overlapping(cli_env: dict[str, str], tmp_path: Path) -> None:
    name = f"every-minute-{uuid.uuid4().hex[:4]}"
    flow = tmp_path / "tick.py"
    flow.write_text(FLOW)
    made = levrt(cli_env, "schedule", "create", name, f"{flow}:main", "seconds=20", "--cron", "* * * * *",
                 "-e", f"LEVRT_EXAMPLE_IMAGE={BUSYBOX}")
    assert made.returncode == 0, made.stderr
    start = time.monotonic()
    refused_while_running = False
    try:
        while True:
            found = runs(cli_env, name)
            if any(run["state"] == "running" for run in found) and not refused_while_running:
                now = levrt(cli_env, "schedule", "run-now", name)
                if now.returncode == 2:  # the controller's status saw the run: refused
                    assert "has a run going" in now.stderr, now.stderr
                    refused_while_running = True
            ended = [run for run in found if run["state"] != "running"]
            if len(ended) >= 3:
                break
            assert time.monotonic() - start < 300, f"only {len(ended)} runs ended in 5 minutes: {found}"
            time.sleep(3)
        took = time.monotonic() - start
        listed = levrt(cli_env, "schedule", "list", "-o", "json")
        [row] = [r for r in json.loads(listed.stdout) if r["name"] == name]
        assert row["cron"] == "* * * * *" and row["what"].endswith("tick.py:main seconds=20") and row["lastSucceeded"]
        assert levrt(cli_env, "schedule", "suspend", name).returncode == 0
    finally:
        levrt(cli_env, "schedule", "delete", name)
    assert all(run["state"] == "succeeded" for run in ended[:3]), ended
    assert all(run["where"] == "in-cluster" for run in ended)
    for earlier, later in itertools.pairwise(ended):
        assert later["started"] >= earlier["ended"], f"runs overlapped: {earlier} and {later}"
    assert refused_while_running, "no run-now was tried while a run went on"
    print(f"\n3 runs of a schedule every minute ended {took:.0f} s after it was made")
    assert took < 4.5 * 60
    gone = levrt(cli_env, "schedule", "list", "-o", "json")
    assert name not in gone.stdout
