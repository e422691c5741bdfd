"""``levrt logs J.T`` after the job ended, on the real cluster: the task's Pod is gone and its output
comes from the store's log archive (issue 22, "Logs that outlast Pods").

Why on the cluster: the archive is read from the real apiserver's ``pods/log`` at the task's end,
written to the real store, and read back by a second ``levrt`` process after the Pod was deleted;
the fakes cannot show that the Pod's logs are still readable at that moment.
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
from levrt import Cr


def connect(ip):
    raise RuntimeError(f"target unreachable: {ip}")


@levrt.remote
def probe(ip):
    print("probing", ip)
    connect(ip)


async def main():
    await Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], entry=probe("10.0.0.99"))
"""


def levrt(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "levrt", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_failed_entrys_traceback_is_read_back_from_the_archive_after_its_pod_is_gone(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    flow = tmp_path / "archived.py"
    flow.write_text(FLOW)
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    run = levrt("run", str(flow), "--no-progress", env=env)
    assert run.returncode == 1, run.stderr[-3000:]
    job = int(re.search(r"^job: (\d+)$", run.stderr, re.M).group(1))  # type: ignore[union-attr]

    logs = levrt("logs", f"{job}.0", env=env)  # the job ended and deleted its Pod: the archive answers
    assert logs.returncode == 0, logs.stderr
    assert f"Pod lev-j{job}-t0 is gone; this is its main output archived" in logs.stderr
    assert "probing 10.0.0.99" in logs.stdout
    assert 'archived.py", line 8, in connect' in logs.stdout, logs.stdout
    assert "RuntimeError: target unreachable: 10.0.0.99" in logs.stdout
    # --tail reads the archive's last lines. Which of stdout's and stderr's last lines is last is the
    # container runtime's choice (two pipes copied apart, even with stdout flushed first): one line.
    tail = levrt("logs", f"{job}.0", "--tail", "1", env=env)
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 1 and tail.stdout.strip() in logs.stdout.splitlines()[-2:], tail.stdout
