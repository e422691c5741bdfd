"""What an operator sees: ``levrt run`` in a real terminal (tmux), and ``levrt ps`` after the job.

Why tmux: the live display once drew its title and table header again and again as the table grew
(log lines written behind rich's back moved its region). Only a real terminal shows that, and
``tmux capture-pane -S -`` gives back everything it drew, scrollback included. The job's tasks are
then listed by ``levrt ps --job N`` from the store, once their Pods are gone.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import BUSYBOX

REPO = Path(__file__).resolve().parents[2]
TASKS = 13
"""examples/workflow.py: its target, ten scans, and a banner for each of the two open ports."""


def tmux(socket: str, *args: str, env: dict[str, str] | None = None) -> str:
    found = shutil.which("tmux")
    if found is None:
        pytest.fail("tmux is not installed: the test cluster's Debian packages carry it (apt-get install tmux)")
    done = subprocess.run([found, "-L", socket, *args], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_in_terminal(tmp_path: Path, env: dict[str, str], *, width: int, height: int) -> str:
    """``levrt run examples/workflow.py`` in a terminal ``width`` x ``height``; all it drew."""
    socket = f"levrt-e2e-{uuid.uuid4().hex[:8]}"  # a tmux server of our own, started with ``env``
    script = tmp_path / "run.sh"
    script.write_text(f"cd {shlex.quote(str(REPO))}\n{shlex.quote(sys.executable)} -m levrt run examples/workflow.py\n"
                      'echo "EXIT=$?"\nsleep 600\n')
    tmux(socket, "new-session", "-d", "-s", "run", "-x", str(width), "-y", str(height), f"bash {script}", env=env)
    try:
        tmux(socket, "set-option", "-t", "run", "history-limit", "10000")
        deadline = time.monotonic() + 300
        screen = ""
        while time.monotonic() < deadline:
            screen = tmux(socket, "capture-pane", "-p", "-J", "-S", "-", "-t", "run")
            if "EXIT=" in screen:
                return screen
            time.sleep(2)
        pytest.fail(f"levrt run did not end within 300 s; the terminal showed:\n{screen}")
    finally:
        subprocess.run([shutil.which("tmux") or "tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)


@pytest.mark.parametrize(("width", "height"), [(120, 40), (100, 16)], ids=["120x40", "100x16"])
def test_the_live_display_draws_once_names_tasks_and_sums_up(cli_env: dict[str, str], tmp_path: Path,
                                                             width: int, height: int) -> None:
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX, TERM="xterm-256color")
    screen = run_in_terminal(tmp_path, env, width=width, height=height)
    lines = screen.splitlines()
    assert "EXIT=0" in screen, screen
    job = int(re.search(r"^job: (\d+)$", screen, re.M).group(1))  # type: ignore[union-attr]
    titles = [line for line in lines if line.strip() == f"levrt job {job}"]
    headers = [line for line in lines if re.match(r"^┃ task\s+┃ name\s+┃ state", line)]
    assert len(titles) == 1 and len(headers) == 1, screen  # one drawing, redrawn in place
    assert re.search(r"tcpscan\.scan\(\d+\.\d+\.\d+\.\d+, \d+-\d+\)", screen), screen
    assert f"job {job}: {TASKS} tasks ({TASKS} done) in " in screen, screen
    assert all(len(line) <= width for line in lines if line[:1] in "┏┃┡│└")  # no row wrapped (-J joins them)
    if height < 30:  # 13 tasks do not fit in 16 lines: the display says how many it leaves out
        assert re.search(r"\d+ more: \d+ done", screen), screen
        assert "tcpscan.banner(" in screen  # the latest tasks are the ones shown
    else:
        assert re.search(r"tcpscan\.scan\(\d+\.\d+\.\d+\.\d+, 2200-2219\)", screen), screen
        assert screen.count("tcpscan.scan(") == 10 and screen.count("tcpscan.banner(") == 2, screen

    # The run is over and its Pods deleted: ps lists the job's tasks from the store.
    from tests.cluster.node import kubectl

    pods = kubectl("-n", cli_env["LEVRT_NAMESPACE"], "get", "pods", "-l", f"levrt.io/job={job}", "-o", "name",
                   kubeconfig=cli_env["KUBECONFIG"]).split()
    assert pods == []
    ps = subprocess.run([sys.executable, "-m", "levrt", "ps", "--job", str(job)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
    assert ps.returncode == 0, ps.stderr
    table = ps.stdout.splitlines()
    assert table[0].split() == ["TASK", "NAME", "STATE", "RETRIES", "ELAPSED", "AGE"]
    assert [line.split()[0] for line in table[1:]] == [f"{job}.{t}" for t in range(TASKS)]
    assert sum("tcpscan.scan(" in line for line in table) == 10
    listed = subprocess.run([sys.executable, "-m", "levrt", "ps", "--job", str(job), "-o", "json"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    rows = json.loads(listed.stdout)
    assert [r["task"] for r in rows] == [f"{job}.{t}" for t in range(TASKS)]
    assert {r["state"] for r in rows} == {"done"}
    assert rows[0]["name"] == BUSYBOX  # the target: built right in the workflow, so named by its image
    assert all(r["node"] != "-" and r["host"] != "-" and r["elapsed"] > 0 for r in rows), rows
    # The default listing is your jobs: this one, from its record, with its tasks counted by state.
    recent = subprocess.run([sys.executable, "-m", "levrt", "ps", "-o", "json"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert recent.returncode == 0, recent.stderr
    mine = [r for r in json.loads(recent.stdout) if r["job"] == job]
    assert len(mine) == 1, recent.stdout
    assert mine[0]["state"] == "succeeded" and mine[0]["tasks"] == {"done": TASKS}, mine
    assert mine[0]["what"].startswith("examples/workflow.py") and mine[0]["where"] == "laptop", mine
