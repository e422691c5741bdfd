"""An entry keeps its author's file name and source lines in the container, whatever cloudpickle does.

Why: the container has neither the author's file nor, since cloudpickle 3.1.3, its name (that
release writes ``<dynamic-code>`` as the file of every function it pickles by value; 3.1.2 kept
the path). The payload carries both (``levrt.payload``). These tests run real payloads through
``python -m levrt.runtime`` where the file does not exist: in the busybox-only root filesystem
with the bundle, and on this machine's Python with each cloudpickle release installed into a
cache folder by version, the tool module deleted between pickling and running. A traceback, a
breakpoint's message and pdb's ``where``/``list`` under ``levrt attach`` must name the file and
show its lines.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import levrt.payload
from levrt._cli.attach import BRIDGE
from tests.cluster.gotools import cache_root
from tests.runtime.chroot import CHROOT, PAYLOAD, TASK_ENV, finish, inside, python, read, run_entry

REPO = Path(__file__).resolve().parents[2]
HERE = str(Path(__file__).resolve())

# The release that hid file names, and the one before it.
CLOUDPICKLE_RELEASES = ("3.1.2", "3.1.3")


def refuse(target: str) -> None:
    reachable = False
    if not reachable:
        raise RuntimeError(f"target unreachable: {target}")  # the line a traceback must show


def stop_for_a_look(out: str) -> None:
    seen = "looked"
    breakpoint()  # the breakpoint
    open(out, "w").write(seen)  # where pdb stops


def line_of(func: object, marker: str) -> tuple[int, str]:
    """The line number and text of the line of ``func`` holding ``marker``."""
    lines, first = inspect.getsourcelines(func)  # type: ignore[arg-type]
    index = next(i for i, text in enumerate(lines) if marker in text)
    return first + index, lines[index].strip()


# -- in the bundle: the task container's Python, without the test file ---------------------------------


def test_in_the_bundle_a_traceback_names_the_file_and_shows_the_line(rootfs: Path) -> None:
    assert not inside(rootfs, HERE).exists()
    done = run_entry(rootfs, refuse, "10.0.0.99")
    err = done.stderr.decode()
    number, text = line_of(refuse, "the line a traceback must show")
    assert done.returncode == 1, err
    assert f'File "{HERE}", line {number}, in refuse\n    {text}\n' in err, err
    assert "<dynamic-code>" not in err
    assert "RuntimeError: target unreachable: 10.0.0.99" in err


def test_in_the_bundle_attach_shows_where_and_lists_the_source(rootfs: Path) -> None:
    inside(rootfs, PAYLOAD).write_bytes(levrt.payload.dumps(stop_for_a_look, ("/tmp/out",)))
    task = python(rootfs, "-m", "levrt.runtime", env={**TASK_ENV, "LEVRT_DEBUG_WAIT": "30"})
    try:
        client = subprocess.run([CHROOT, str(rootfs), "/levrt/bin/python3", "-I", "-c", BRIDGE, "--wait", "20"],
                                input=b"where\nlist\nc\n", capture_output=True, timeout=40, env={"PATH": "/bin"})
    finally:
        done = finish(task)
    out, err = client.stdout.decode(), done.stderr.decode()
    at, _ = line_of(stop_for_a_look, "# the breakpoint")
    stop, text = line_of(stop_for_a_look, "# where pdb stops")
    assert client.returncode == 0, client.stderr.decode()
    assert f"> {HERE}({stop})stop_for_a_look()\n-> {text}\n" in out, out  # where
    assert f"{stop:>3}  ->\t    {text}\n" in out, out  # list, the current line marked
    assert f"{at:>3}  \t    breakpoint()  # the breakpoint\n" in out, out
    assert f"levrt: breakpoint at {HERE}:{at} (in stop_for_a_look)" in err, err
    assert done.returncode == 0 and read(rootfs, "/tmp/out") == "looked", err


# -- each cloudpickle release, the tool module gone before the entry runs --------------------------------


TOOL = '''\
"""A tool module, deleted before its entry runs."""


def probe(target):
    port = 2222
    raise ConnectionError(f"{target}:{port} refused")  # the failing line


def pause(out):
    breakpoint()  # the stop
    open(out, "w").write("went on")
'''


def cloudpickle_site(version: str) -> Path:
    """A folder holding cloudpickle ``version`` alone, installed from the package index once (cached)."""
    site = cache_root() / "pip" / f"cloudpickle-{version}"
    if not (site / "cloudpickle").is_dir():
        partial = site.with_name(site.name + ".partial")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--target", str(partial), f"cloudpickle=={version}"], check=True, timeout=300)
        partial.rename(site)
    return site


def on_release(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """This machine's Python with ``site``'s cloudpickle ahead of every other, and this checkout's levrt."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd="/",
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": f"{site}:{REPO}", **env})


@pytest.mark.parametrize("version", CLOUDPICKLE_RELEASES)
def test_each_cloudpickle_release_keeps_file_names_and_lines(version: str, tmp_path: Path) -> None:
    site = cloudpickle_site(version)
    tool = tmp_path / "tool" / "scanner.py"
    tool.parent.mkdir()
    tool.write_text(TOOL)
    dump = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tool.parent)!r})
        import cloudpickle, scanner
        from levrt import payload
        assert cloudpickle.__version__ == {version!r}, cloudpickle.__version__
        open({str(tmp_path / "probe")!r}, "wb").write(payload.dumps(scanner.probe, ("10.0.0.99",)))
        open({str(tmp_path / "pause")!r}, "wb").write(payload.dumps(scanner.pause, ({str(tmp_path / "out")!r},)))
    """)
    pickled = on_release(site, "-c", dump)
    assert pickled.returncode == 0, pickled.stderr
    tool.unlink()
    task = {"LEVRT_JOB": "7", "LEVRT_TASK": "3", "LEVRT_TERMINATION_LOG": str(tmp_path / "reason")}

    failed = on_release(site, "-m", "levrt.runtime", LEVRT_PAYLOAD=str(tmp_path / "probe"), **task)
    assert failed.returncode == 1, failed.stderr
    assert (f'File "{tool}", line 6, in probe\n'
            '    raise ConnectionError(f"{target}:{port} refused")  # the failing line\n') in failed.stderr
    assert "ConnectionError: 10.0.0.99:2222 refused" in failed.stderr

    paused = on_release(site, "-m", "levrt.runtime", LEVRT_PAYLOAD=str(tmp_path / "pause"), LEVRT_DEBUG_WAIT="0",
                        LEVRT_DEBUG_SOCKET=str(tmp_path / "debug.sock"), **task)
    assert paused.returncode == 0, paused.stderr
    assert f"levrt: breakpoint at {tool}:10 (in pause) skipped" in paused.stderr
    assert (tmp_path / "out").read_text() == "went on"
