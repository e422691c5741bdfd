"""``levrt run --no-progress`` on the real cluster: what a log (a pipe, ``levrt logs`` of an
orchestration Pod) shows of a job with a failing entry.

Why: without a terminal ``levrt run`` printed only ``progress: 0.1 ... 1``, and a failed entry's
summary quoted the Pod's ``Normal`` events, never the traceback that said why (issue 22). Here each
task gets a line per state change with its name, the summary follows, and under the failure the
last lines of its traceback, whose frames name the orchestration file the entry was written in.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import BUSYBOX

REPO = Path(__file__).resolve().parents[2]
FLOW = """\
import os

import levrt
from levrt import Concurrent, Cr


def connect(ip):
    raise RuntimeError(f"target unreachable: {ip}")


@levrt.remote
def probe(ip):
    if ip.endswith(".99"):
        connect(ip)


def check(ip):
    return Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], entry=probe(ip))


async def main():
    async with Concurrent() as c:
        c.start(check("10.0.0.1"))
        c.start(check("10.0.0.99"))
"""


def test_no_progress_prints_each_task_the_summary_and_the_failed_entrys_traceback(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    flow = tmp_path / "unreachable.py"
    flow.write_text(FLOW)
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    run = subprocess.run([sys.executable, "-m", "levrt", "run", str(flow), "--no-progress"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    err = run.stderr
    assert run.returncode == 1, err[-3000:]
    job = int(re.search(r"^job: (\d+)$", err, re.M).group(1))  # type: ignore[union-attr]
    lines = err.splitlines()
    assert re.search(rf"^{job}\.0 unreachable\.check\(10\.0\.0\.1\): done in \d", err, re.M), err
    assert re.search(rf"^{job}\.1 unreachable\.check\(10\.0\.0\.99\): failed in \S+ "
                     r"\(RuntimeError: target unreachable: 10\.0\.0\.99\)$", err, re.M), err
    assert not [line for line in lines if re.fullmatch(r"progress: [0-9.]+", line)]  # no fractions
    at = next(i for i, line in enumerate(lines) if line.startswith(f"job {job}: "))
    assert lines[at].startswith(f"job {job}: 2 tasks (1 done, 1 failed) in "), err
    assert lines[at + 1] == (f"  failed {job}.1 unreachable.check(10.0.0.99): "
                             "RuntimeError: target unreachable: 10.0.0.99")
    traceback = lines[at + 2:at + 12]
    assert any('unreachable.py", line 8, in connect' in line for line in traceback), err
    assert "    RuntimeError: target unreachable: 10.0.0.99" in traceback, err
    assert "Normal " not in err, err  # the Pod's Normal events say nothing about why
    assert "levrt run: 1 of 2 tasks in Concurrent failed:" in err
