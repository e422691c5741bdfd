"""What the operator sees during ``levrt run``: each task named by the mode and arguments that made
its Cr, a display that never grows taller than the terminal, and the summary at the end.

Why these tests: the live table once drew its title and header over and over in a real terminal
(issue 13). The display is built from pure functions of the task list, so the height limit, the
choice of rows and the summary are checked here; the redraw itself under tmux in
tests/e2e/test_operator_view.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rich.console import Console

import levrt
from levrt import Cr
from levrt._cli import display
from levrt._cli.base import load_module
from levrt._cli.display import Row, TaskClock, job_table, pick_rows, summary_lines, task_rows
from levrt._cli.ps import elapsed_text
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from levrt.naming import MAX_NAME_ARGS, call_name
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

IMG = "busybox:1.36"


@levrt.remote
def probe(target: str, port: int) -> None:
    pass


# Modes as a tool package writes them: plain functions returning a Cr.
def scan(target: str, ports: str = "1-1024", timeout: float = 0.5) -> Cr:
    return Cr(IMG, "t/scan@1.0", entry=probe(target, 1))


def sweep(*targets: str, limit: int = 4, **options: Any) -> Cr:
    return Cr(IMG)


def tcp(ip: str, ports: str) -> Cr:
    return _build(["-sT", "-p", ports], ip)


def _build(options: list[str], ip: str) -> Cr:  # a private helper between the mode and Cr(...)
    return Cr(IMG, entry=probe(ip, 2))


def decorated(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)
    return wrapper


@decorated
def wrapped(target: str, depth: int = 2) -> Cr:
    return Cr(IMG)


# -- names -----------------------------------------------------------------------------------------


def test_a_mode_names_its_cr_with_the_arguments_given() -> None:
    assert scan("10.244.0.21", "2200-2219").origin == "test_display.scan(10.244.0.21, 2200-2219)"
    # Arguments left at their default are left out; one given after a left-out one keeps its name.
    assert scan("10.0.0.1").origin == "test_display.scan(10.0.0.1)"
    assert scan("10.0.0.1", timeout=2.0).origin == "test_display.scan(10.0.0.1, timeout=2.0)"
    assert scan("10.0.0.1", "1-1024", 0.5).origin == "test_display.scan(10.0.0.1)"


def test_star_arguments_keywords_and_decorators() -> None:
    assert sweep("a", "b", limit=9, os=True).origin == "test_display.sweep(a, b, limit=9, os=True)"
    assert sweep("a").origin == "test_display.sweep(a)"
    # functools.wraps keeps __wrapped__: the defaults are still found through the decorator.
    assert wrapped("h").origin == "test_display.wrapped(h)"
    assert wrapped("h", 3).origin == "test_display.wrapped(h, 3)"


def test_a_private_helper_between_the_mode_and_cr_is_looked_through() -> None:
    assert tcp("10.0.0.9", "22,80").origin == "test_display.tcp(10.0.0.9, '22,80')"


def test_a_cr_made_in_a_workflow_is_named_by_its_entry_else_its_image() -> None:
    async def workflow() -> tuple[Cr, Cr]:
        return Cr(IMG, entry=probe("10.0.0.3", 8080)), Cr(IMG, cmd=["true"])

    with_entry, plain = asyncio.run(workflow())
    assert with_entry.origin == "test_display.probe(10.0.0.3, 8080)"
    assert plain.origin == IMG
    # A plain public function is a mode, even without arguments (as this test function is).
    assert Cr(IMG).origin == "test_display.test_a_cr_made_in_a_workflow_is_named_by_its_entry_else_its_image()"


def test_module_level_and_lambdas_fall_back() -> None:
    made = eval("Cr(IMG)", {"Cr": Cr, "IMG": IMG})  # module-level code: no mode
    assert made.origin == IMG
    assert (lambda: Cr(IMG))().origin.startswith("test_display.test_module_level_and_lambdas_fall_back(")


def test_a_file_run_outside_a_package_goes_by_its_file_name(tmp_path: Any) -> None:
    # `levrt run flow.py` imports such a file under a made-up module name; people know the file.
    (tmp_path / "flow.py").write_text(
        "import levrt\nfrom levrt import Cr\n\n@levrt.remote\ndef work(n):\n    pass\n\n"
        "def check(host, code=0):\n    return Cr('busybox:1.36', cmd=['true'])\n\n"
        "async def main():\n    return Cr('busybox:1.36', entry=work(3))\n"
    )
    module = load_module(str(tmp_path / "flow.py"))
    assert module.__name__ != "flow"
    assert module.check("10.0.0.2", 3).origin == "flow.check(10.0.0.2, 3)"
    assert asyncio.run(module.main()).origin == "flow.work(3)"


@pytest.mark.parametrize(("value", "shown"), [
    ("10.0.0.1", "10.0.0.1"),
    ("a b", "'a b'"),  # would read as two arguments bare
    ("22,80", "'22,80'"),
    ("", "''"),
    (b"\x00" * 100, None),
    (list(range(10_000)), "[0, 1, 2, 3, ...]"),
    ({"a": 1, "b": 2, "c": 3, "d": 4}, "{'a': 1, 'b': 2, 'c': 3, ...}"),
    (None, "None"),
    (1.5, "1.5"),
])
def test_each_value_is_short(value: object, shown: str | None) -> None:
    text = call_name("m.f", [value])
    assert text.startswith("m.f(") and text.endswith(")")
    if shown is not None:
        assert text == f"m.f({shown})"
    assert len(text) <= len("m.f()") + MAX_NAME_ARGS


def test_a_long_argument_list_is_cut_on_an_argument_boundary() -> None:
    text = call_name("nmap.sweep", [f"10.0.0.{i}" for i in range(40)])
    assert text.endswith(", ...)") and len(text) <= len("nmap.sweep()") + MAX_NAME_ARGS
    assert "10.0.0.0, 10.0.0.1" in text
    one_huge = call_name("m.f", ["x" * 39 + "/" + "y" * 200])  # one argument longer than the limit
    assert one_huge == "m.f('xxxxxxxxx...yyyyyyyyyy')"  # reprlib keeps its two ends
    many_keywords = call_name("m.f", [], {f"option_{i}": "x" * 10 for i in range(9)})
    assert many_keywords == "m.f(option_0=xxxxxxxxxx, option_1=xxxxxxxxxx, ...)"


def test_the_origin_is_a_plain_string_and_costs_no_frame() -> None:
    cr = scan("10.0.0.1", "22")
    assert type(cr.origin) is str
    assert pickle.loads(pickle.dumps(cr.origin)) == cr.origin
    assert "origin" in Cr.__slots__  # one slot more, no __dict__


# -- the table -------------------------------------------------------------------------------------


def row(index: int, state: str = "done", *, name: str | None = None, reason: str = "") -> Row:
    return Row(id=f"7.{index}", index=index, name=name or f"tcpscan.scan(10.0.0.1, {index})", state=state,
               elapsed=1.5, retries="-", host="10.244.0.9", pod=f"lev-j7-t{index}", node="n1", reason=reason)


def rendered(renderable: Any, *, width: int = 120, height: int = 40) -> list[str]:
    console = Console(file=io.StringIO(), width=width, height=height, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.file.getvalue().rstrip("\n").splitlines()  # type: ignore[attr-defined]


def test_a_small_job_shows_every_task_with_its_name() -> None:
    rows = [row(0, "running"), row(1), row(2, "failed(Error)", reason="Task lev-j7-t2 failed: Error")]
    lines = rendered(job_table(7, rows, fraction=0.5, height=40, width=120))
    text = "\n".join(lines)
    assert sum("levrt job 7" in line for line in lines) == 1
    assert sum(line.startswith("┃ task") for line in lines) == 1
    for r in rows:
        assert r.name in text and r.id in text
    assert "failed(Error)" in text and "host" in text and "pod" not in lines[2]  # 120 columns: no Pod column
    assert "running: 1 done: 1 failed: 1" in text


@pytest.mark.parametrize(("height", "width"), [(40, 120), (24, 80), (12, 60), (14, 32), (5, 40)])
def test_the_display_never_grows_taller_than_the_terminal(height: int, width: int) -> None:
    rows = [row(i, "done") for i in range(300)] + [row(300 + i, "running") for i in range(5)]
    rows[17] = row(17, "failed(OOMKilled)")
    lines = rendered(job_table(7, rows, fraction=0.3, height=height, width=width), width=width, height=height)
    assert len(lines) <= max(height - 1, FIXED_MIN), lines
    assert all(len(line) <= width for line in lines)
    text = "\n".join(lines)
    assert "more:" in text or width < 40  # 32 columns: id and state keep theirs, the name has none left
    assert any(line.startswith("│ ...") for line in lines)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_name_gives_way_first_the_id_and_state_never(width: int) -> None:
    """At 80 columns the table once showed ``│ … │ tcpscan.scan(10.244.0.75, 2200-2… │ … │ 2.… │``."""
    states = ["running", "pending(ContainerCreating)", "failed(ImagePullBackOff)", "done", "timed-out"]
    rows = [Row(id=f"95.{i}", index=i, name=f"tcpscan.scan(10.244.0.75, 2200-2219, timeout=2.5, retries={i})",
                state=states[i % len(states)], elapsed=2.5, retries="-", host="10.244.0.75", pod=f"lev-j95-t{i}",
                node="n1") for i in range(13)]
    lines = rendered(job_table(95, rows, fraction=0.5, height=40, width=width), width=width)
    assert all(len(line) <= width for line in lines)
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == 13
    for r, line in zip(rows, body, strict=True):
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert (cells[0], cells[2], cells[3]) == (r.id, r.state, "2.5s"), line
        name = cells[1]
        assert name == r.name or (name.endswith("…") and r.name.startswith(name[:-1])), line
    header = next(line for line in lines if line.startswith("┃ task"))
    assert [cell.strip() for cell in header.strip("┃").split("┃")][:5] == ["task", "name", "state", "elapsed",
                                                                           "retries"]
    if width == 80:
        assert all(cells.endswith("…") for cells in (line.split("│")[2].strip() for line in body))


FIXED_MIN = display.FIXED_LINES + 1
"""A terminal too small for anything still gets one row and the frame around it."""


def test_which_rows_fit_failed_then_running_then_the_latest() -> None:
    rows = [row(i) for i in range(20)] + [row(20, "running"), row(21, "pending(ContainerCreating)")]
    rows[3] = row(3, "failed(Error)")
    shown, hidden = pick_rows(rows, 6)
    assert [r.index for r in shown] == [3, 18, 19, 20, 21]  # in id order; one line left for "... N more"
    assert len(hidden) == 17 and {r.index for r in hidden} | {r.index for r in shown} == set(range(22))
    assert pick_rows(rows[:4], 6) == (rows[:4], [])


def test_the_summary_counts_states_and_names_each_failure() -> None:
    rows = [row(0), row(1, "timed-out"), row(2, "failed(Error)", reason="Task lev-j7-t2 failed: Error (exit 3)"),
            row(3, "failed(Error)")]
    lines = summary_lines(7, rows, wall=83.0)
    assert lines[0] == "job 7: 4 tasks (1 done, 1 timed-out, 2 failed) in 1m23s"
    assert lines[1] == "  failed 7.2 tcpscan.scan(10.0.0.1, 2): Task lev-j7-t2 failed: Error (exit 3)"
    assert lines[2] == "  failed 7.3 tcpscan.scan(10.0.0.1, 3): failed(Error)"
    assert summary_lines(7, [], wall=0.2) == ["job 7: 0 tasks (no tasks) in 0.2s"]


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (0.04, "0.0s"), (9.96, "10.0s"), (61, "1m01s"),
                                               (3600 * 2 + 65, "2h01m")])
def test_elapsed(seconds: float | None, text: str) -> None:
    assert elapsed_text(seconds) == text


# -- the rows of a real job (fake cluster and store) -------------------------------------------------

SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")


@contextlib.asynccontextmanager
async def fake_job() -> AsyncIterator[tuple[Any, FakeApiServer, FakeMongo]]:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    api.autorun(0)
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=SETTINGS) as engine:
            yield engine, api, mongo


async def test_the_rows_and_the_records_carry_the_task_names() -> None:
    clock = TaskClock()
    async with fake_job() as (engine, _api, mongo):
        await scan("10.0.0.5", "22")
        running = await tcp("10.0.0.6", "80").start()
        rows = task_rows(engine, clock)
        assert [(r.id, r.name) for r in rows] == [(f"{engine.job_id}.0", "test_display.scan(10.0.0.5, 22)"),
                                                  (f"{engine.job_id}.1", "test_display.tcp(10.0.0.6, 80)")]
        assert rows[0].state == "done" and rows[0].elapsed is not None
        await running
    records = sorted(mongo["levrt_journal"]["levrt_tasks"].docs, key=lambda d: d["task"])
    assert [r["name"] for r in records] == ["test_display.scan(10.0.0.5, 22)", "test_display.tcp(10.0.0.6, 80)"]
    assert all(r["maxRetries"] == 0 for r in records)


async def test_logs_go_through_the_console_while_the_display_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cause of the repeated titles: log lines written behind rich's back. While the display
    runs, the terminal's handler is replaced by one printing through rich's console."""
    out = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(display.sys, "stderr", out)
    console = Console(file=io.StringIO(), width=80, force_terminal=False, color_system=None)
    with display._logs_through(console):
        assert root.handlers != [handler]
        logging.getLogger("lev").warning("task 3.1: retrying")
        logging.getLogger("lev").warning("progress: 0.5")  # the bar shows progress: left out
        logging.getLogger("lev").warning("store [Errno 111] [bold]refused[/bold]")  # printed as written
    assert root.handlers == [handler]
    assert out.getvalue() == ""
    assert console.file.getvalue() == (  # type: ignore[attr-defined]
        "task 3.1: retrying\nstore [Errno 111] [bold]refused[/bold]\n")
