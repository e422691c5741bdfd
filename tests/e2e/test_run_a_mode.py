"""``levrt run FILE:FUNC NAME=VALUE`` of a sync mode on the real cluster (issue 22, item 4).

Why: the unit tests prove the arguments are converted and a wrong call refused before anything is
created, against fakes; here the mode's Cr runs as a real job, from this machine and from an
orchestration Pod (which reads the same raw strings again), and prints the task's record; and a
bad argument exits 2 without opening a job or submitting a Pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
MODE = """
import os

from levrt import Cr, ctx, remote


@remote
def _say(word: str, times: int) -> None:
    ctx.set(said=" ".join([word] * times), times=times)


def say(word: str, times: int = 1) -> Cr:
    return Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], entry=_say(word, times))
"""


def levrt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("where", ["here", "in-cluster"])
def test_a_sync_mode_runs_with_name_value(cli_env: dict[str, str], tmp_path: Path, where: str) -> None:
    (tmp_path / "modes.py").write_text(MODE)
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    placement = [] if where == "here" else ["--in-cluster", "-e", f"LEVRT_EXAMPLE_IMAGE={BUSYBOX}"]
    run = levrt(env, "run", "--no-progress", f"{tmp_path / 'modes.py'}:say", "word=hi", "times=3", *placement)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert json.loads(out[out.index("{"):out.rindex("}") + 1]) == {"said": "hi hi hi", "times": 3}  # 3: an int


@pytest.mark.parametrize("where", ["here", "--detach"])
def test_a_bad_argument_exits_2_before_any_job(cli_env: dict[str, str], tmp_path: Path, where: str) -> None:
    (tmp_path / "modes.py").write_text(MODE)
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    placement = [] if where == "here" else [where]
    run = levrt(env, "run", "--no-progress", f"{tmp_path / 'modes.py'}:say", "hi", "times=three", *placement)
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    usage, problem = run.stderr.strip().splitlines()
    assert usage == f"usage: levrt run {tmp_path / 'modes.py'}:say word=STR [times=INT]"
    assert problem == "levrt run: times='three' is not a whole number (e.g. 10)"
    assert run.stdout == ""  # and no "job: N" on stderr (two lines only): nothing was opened or submitted
