"""``levrt get -o table`` keeps one record per line, and a closed pipe ends the CLI quietly."""

from __future__ import annotations

import subprocess
import sys

from levrt._cli.base import table_cell


def test_table_cells_are_one_line_and_bounded() -> None:
    cell = table_cell("HTTP/1.1 200 OK\r\nDate: today\r\n" + "x" * 100)
    assert "\n" not in cell and "\r" not in cell
    assert cell.startswith("HTTP/1.1 200 OK\\r\\nDate") and len(cell) == 40
    assert table_cell({"open": [22]}) == '{"open": [22]}'


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
