"""``levrt get -o table`` keeps one record per line, and a closed pipe ends the CLI quietly."""

from __future__ import annotations

import subprocess
import sys

from levrt._cli.ps import jobs_table


def test_job_table_cells_are_one_line_bounded_and_never_act_on_the_terminal() -> None:
    row = {"job": 3, "what": "flows.py:sweep HTTP/1.1 200 OK\r\nDate: today\r\n" + "x" * 100,
           "owner": "eve\x1b[2J", "where": "laptop", "state": "failed", "tasks": {"done": 1}, "started": None,
           "duration": None, "ended": None, "error": "Traceback\nRuntimeError: \x1b]0;owned\x07"}
    [narrow], _ = jobs_table([row], wide=False, now=0.0)
    assert narrow[1].startswith("flows.py:sweep HTTP/1.1 200 OK\\r\\nDat") and len(narrow[1]) == 40
    assert narrow[2] == "eve\\x1b[2J"
    [wide], _ = jobs_table([row], wide=True, now=0.0)
    assert wide[1].endswith("x" * 100) and "\n" not in wide[1]
    assert wide[-1] == "RuntimeError: \\x1b]0;owned\\x07"


def test_closed_pipe_is_not_a_traceback() -> None:
    # `levrt get ... | head`: the reader went away; writing then fails with EPIPE inside main().
    code = (
        "import os, sys\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        "from levrt._cli import main\n"
        "sys.exit(main(['check', 'examples/tcpscan.py']))\n"
    )
    proc = subprocess.run([sys.executable, "-u", "-c", code], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0


def test_doctor_recognises_the_runtime_image_with_or_without_a_registry_host() -> None:
    from levrt._cli.admin import same_image

    assert same_image("levrt.local/runtime:2.0.0", "levrt.local/runtime:2.0.0")
    assert same_image("busybox:1.36", "registry.example/library/busybox:1.36")
    assert not same_image("runtime:1", "levrt.local/runtime:10")
    assert not same_image("runtime:1", "other/runtime:1")  # a path prefix is not a registry host
