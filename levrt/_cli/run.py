"""``levrt run FILE[:FUNC] [ARG...] [NAME=VALUE...]``: run a workflow or a mode as one job, here or
in a Pod of the cluster.

The call is checked before anything is created: the file is imported here (for ``--in-cluster``
and ``--detach`` too, which ship the raw strings to the Pod's own ``levrt run``), the arguments
converted by the function's annotations and checked against its ``annot.Param``s
(``levrt._cli.callargs``); a wrong call prints a usage line and one line saying what is wrong,
and exits 2 with no job opened. A mode (a function returning a ``Cr``) is built then too, and the
job awaits its Cr and prints the task's record, as a workflow's return value is printed.

A file written as a script calls ``levrt.run(main())`` when imported. That call is the job: the
author chose its function and arguments, and the code after it may use its value, as under
``python FILE``. So while ``levrt run`` imports the file it takes such calls over
(``levrt.run.calls_at_import``), runs them as its own job (its settings, display and clean-up),
returns the value to the file, and does not call FUNC again. Given ARGs or another FUNC, the file
cannot honour them: that is refused before the call runs (put the call under
``if __name__ == "__main__":``). ``--in-cluster`` only checks the file here: such a call stops
the import unrun, and the Pod's ``levrt run`` makes it the job there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import pathlib
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, NoReturn

from levrt._cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TERMINATED,
    CliError,
    Command,
    add_cluster_options,
    load_module,
    settings_of,
)
from levrt._cli.callargs import CallError, bind, kind_of, runnables, suggest, usage
from levrt._cli.display import live_progress
from levrt._cli.plain import plain_progress
from levrt._cli.published import load_published, published_tool
from levrt._clients.kube import Kube
from levrt._core.incluster import orchestration_file, run_in_cluster, schedule_in_cluster
from levrt._core.jobrecords import identify, where_now
from levrt._shapes.orchestrator import EXIT_HANDED_OVER, PUBLISHED_OPTION
from levrt._shapes.registry import ToolName
from levrt.cr import Cr
from levrt.document import Document
from levrt.errors import LevrtError
from levrt.podenv import OWNER_ENV, RESUME_ENV
from levrt.run import calls_at_import, session
from levrt.settings import Settings

__all__ = ["RUN", "blank_arguments", "run_command"]

DEFAULT_FUNC = "main"
# Return annotations that leave open whether a plain function returns a Cr: it is called to see.
OPEN_RETURNS = (inspect.Signature.empty, Any, object, "Any", "typing.Any", "object")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="FILE[:FUNC]",
                        help="orchestration file or module, and the workflow (async def) or mode (a function "
                             "returning a Cr) to run (default: main); or a published tool, NAMESPACE/TOOL[@VERSION]"
                             ":FUNC, run in the cluster from the registry's copy")
    parser.add_argument("args", nargs="*", metavar="ARG | NAME=VALUE",
                        help="the function's arguments: values in order, or NAME=VALUE for its parameter NAME; "
                             "converted by its annotations (int, float, bool, list[str] as a,b,c ...)")
    parser.add_argument("--in-cluster", action="store_true",
                        help="run the orchestration itself in a Pod under the levrt ServiceAccount")
    parser.add_argument("--detach", action="store_true",
                        help="run it in a Pod (as --in-cluster) and return once its job is open, printing the "
                             "job id: the job runs on without this client (levrt ps/get --job N follow it)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                        help="with --in-cluster: an environment variable for the orchestration Pod (repeatable)")
    parser.add_argument("--resume", type=int, metavar="JOB",
                        help="do not run again what job JOB ran with success: a task identical to one of its "
                             "succeeded tasks (image, entry code and arguments, command, environment, files, "
                             "schema, run options) takes that task's record")
    parser.add_argument("--keep", action="store_true", help="keep task Pods after their results are read")
    parser.add_argument("--logs", action="store_true", help="print each task's logs when it ends")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live display")
    parser.add_argument(PUBLISHED_OPTION, metavar="SHA256", help=argparse.SUPPRESS)  # the orchestration Pod's
    # `levrt schedule create`: the same checks, then a CronJob instead of a Pod (levrt._cli.schedules).
    parser.add_argument("--schedule", help=argparse.SUPPRESS)
    parser.add_argument("--cron", help=argparse.SUPPRESS)
    parser.add_argument("--time-zone", help=argparse.SUPPRESS)
    add_cluster_options(parser)


def blank_arguments() -> argparse.Namespace:
    """``levrt run``'s options at their defaults, for a command that runs through it (``levrt schedule``)."""
    parser = argparse.ArgumentParser()
    _arguments(parser)
    return parser.parse_args(["-"])


def run_command(args: argparse.Namespace) -> int:
    resume = args.resume if args.resume is not None else _resume_in_pod()
    if resume is not None and resume <= 0:
        raise CliError(f"--resume {resume}: give the id of the job to resume (`levrt ps` lists them).")
    attempt = _Attempt({"target": args.target, "args": list(args.args)}, resume=resume)
    if where_now() != "detached":
        return _run_command(args, attempt)
    # Nobody follows a detached Pod's output: a run that fails before its job opens (its file's
    # import, its arguments, in the Pod's environment) opens one to record the failure, so that
    # `levrt ps` shows it failed with its error.
    try:
        return _run_command(args, attempt)
    except Exception as exc:
        if not attempt.opened:
            _record_failure(exc, args, attempt)
        raise


def _run_command(args: argparse.Namespace, attempt: _Attempt) -> int:
    target, _, named = args.target.partition(":")
    tool = published_tool(target)
    if tool is not None:
        return _run_published(args, attempt, tool, named)
    if args.published is not None:
        raise CliError(f"--published names the archive of a published tool; {target!r} is not a tool name.")
    elsewhere = args.in_cluster or args.detach or bool(getattr(args, "schedule", None))
    if elsewhere:
        env = dict(_parse_env(item) for item in args.env)
        if attempt.resume is not None:  # the Pod's job resumes it
            env.setdefault(RESUME_ENV, str(attempt.resume))
        orchestration_file(target)  # before importing it: only a file can be shipped
    elif args.env:
        raise CliError("--env sets variables of the orchestration Pod; it needs --in-cluster or --detach. "
                       "For a local run, set them in your shell.")
    settings = settings_of(args)
    if args.keep:
        settings = settings.replace(keep=True)

    def job_at_import(main: Awaitable[Any], own: Settings | None, kubeconfig: str | None) -> Any:
        # The file's own settings, with what this command line says on top.
        chosen = settings if own is None else _over(own, args)
        return asyncio.run(_run(main, settings=chosen, kubeconfig=args.kubeconfig or kubeconfig,
                                progress=not args.no_progress, attempt=attempt))

    imported = _ImportedRuns(target=target, func=named or None, raw=list(args.args), check_only=elsewhere,
                             job=job_at_import)
    try:
        with calls_at_import(imported):
            module = load_module(target)
    except _CheckedAtImport:
        module = None  # the file runs its own job when imported; the Pod's levrt run makes it the job
    except asyncio.CancelledError:
        return _terminated(attempt)
    except LevrtError:
        raise
    except Exception as exc:
        if not imported.started:
            raise
        return _orchestration_failed(exc)
    if elsewhere:
        if module is not None:  # the mode's Cr is built in the Pod, with the Pod's environment (-e)
            _prepare(module, target, named, args.args, build=False)
        env.setdefault(OWNER_ENV, asyncio.run(_owner(args.kubeconfig)))  # the Pod's job is this user's
        if getattr(args, "schedule", None):
            return _schedule(args, target, named or None, settings=settings, env=env)
        return run_in_cluster(target, named or None, args.args, settings=settings, kubeconfig=args.kubeconfig,
                              env=env, detach=args.detach)
    if imported.values:
        for value in imported.values:
            _print_value(value)
        return EXIT_OK
    assert module is not None
    return _run_here(module, target, named, args, settings=settings, attempt=attempt)


def _run_published(args: argparse.Namespace, attempt: _Attempt, tool: ToolName, named: str) -> int:
    """A published tool: checked here, run in the cluster from the registry's copy (in the Pod that
    runs it, ``--published`` names the archive it may run, and it runs here)."""
    loaded = load_published(tool, named, args, sha256=args.published)
    attempt.what = loaded.what(named, list(args.args))
    settings = settings_of(args).replace(keep=True) if args.keep else settings_of(args)
    if args.published is not None:
        return _run_here(loaded.module, loaded.pinned, loaded.func, args, settings=settings, attempt=attempt)
    _prepare(loaded.module, loaded.pinned, loaded.func, args.args, build=False)
    env = dict(_parse_env(item) for item in args.env)
    env.setdefault(OWNER_ENV, asyncio.run(_owner(args.kubeconfig)))  # the Pod's job is this user's
    if attempt.resume is not None:
        env.setdefault(RESUME_ENV, str(attempt.resume))
    if getattr(args, "schedule", None):
        return _schedule(args, loaded.pinned, named, settings=settings, env=env, published=str(loaded.record["sha256"]))
    return run_in_cluster(loaded.pinned, named, args.args, settings=settings, kubeconfig=args.kubeconfig, env=env,
                          detach=args.detach, published=str(loaded.record["sha256"]))


def _schedule(args: argparse.Namespace, target: str, func: str | None, *, settings: Settings,
              env: dict[str, str], published: str | None = None) -> int:
    """The checked call as a schedule: a CronJob whose runs are this orchestration Pod."""
    what = " ".join([target + (f":{func}" if func else ""), *args.args])
    made = schedule_in_cluster(target, func, args.args, name=args.schedule, cron=args.cron, time_zone=args.time_zone,
                               what=what, settings=settings, kubeconfig=args.kubeconfig, env=env, published=published)
    zone = f" ({args.time_zone})" if args.time_zone else " (the cluster's time zone, UTC unless set)"
    print(f"schedule {made['metadata']['name']}: {what} on '{args.cron}'{zone}; its runs are jobs: "
          f"`levrt ps --schedule {args.schedule}`; `levrt schedule list` shows it.")
    return EXIT_OK


def _run_here(module: ModuleType, target: str, named: str, args: argparse.Namespace, *, settings: Settings,
              attempt: _Attempt) -> int:
    """Run ``target:named`` of ``module`` in this process as one job, with its progress shown."""
    try:
        start = _prepare(module, target, named, args.args, build=True)
    except LevrtError:
        raise
    except Exception as exc:  # the mode's own code failed while building its Cr: the author's traceback
        return _orchestration_failed(exc)
    try:
        result = asyncio.run(_run(start, settings=settings, kubeconfig=args.kubeconfig, progress=not args.no_progress,
                                  attempt=attempt))
    except asyncio.CancelledError:
        return _terminated(attempt)
    except LevrtError:
        raise  # levrt's own: one line (levrt._cli.main)
    except Exception as exc:
        return _orchestration_failed(exc)
    _print_value(result)
    return EXIT_OK


# -- the function and its call -----------------------------------------------------------------------


def _prepare(module: ModuleType, target: str, named: str, raw: Sequence[str], *,
             build: bool) -> Callable[[], Awaitable[Any]]:
    """What the job awaits: the workflow's coroutine, or the mode's Cr (with ``build``, made now, so
    that the mode's own checks of its arguments come before the job too). Usage errors exit 2."""
    func_name = named or DEFAULT_FUNC
    func = getattr(module, func_name, None)
    if not inspect.isfunction(func):
        _no_such_function(module, target, func_name, found=func)
    shown = f"{target}:{func_name}"
    try:
        call = bind(func, raw)
    except CallError as exc:
        _usage_error(func, shown, str(exc))
    if inspect.iscoroutinefunction(func):
        return lambda: _outcome(func(*call.args, **call.kwargs))
    returns = inspect.signature(func).return_annotation
    if kind_of(func) is None and returns not in OPEN_RETURNS:
        _usage_error(func, shown, f"{func_name} returns {_type_name(returns)}: levrt run runs workflows (async def) "
                                  "and modes (functions returning a Cr)")
    if not build:
        return lambda: _outcome(func(*call.args, **call.kwargs))
    try:
        cr = func(*call.args, **call.kwargs)
    except (ValueError, TypeError) as exc:  # the mode's own checks (Cr options, its parsers): the call is wrong
        _usage_error(func, shown, f"{func_name} refused these arguments: {exc}")
    if not isinstance(cr, Cr):
        _usage_error(func, shown, f"{func_name} returned {type(cr).__name__}, not a Cr: levrt run runs workflows "
                                  "(async def) and modes (functions returning a Cr)")
    return lambda: _outcome(cr)


async def _outcome(value: Any) -> Any:
    """A workflow's value as printed; a mode's Cr is run and its task's record is the value."""
    if inspect.isawaitable(value) and not isinstance(value, Cr):
        value = await value
    if isinstance(value, Cr):
        value = await value
    if isinstance(value, Document):
        record = await value.get()
        if record is None:
            print(f"levrt run: task {value.job_id}.{value.task_id} stored no record.", file=sys.stderr)
        return record
    return value


def _no_such_function(module: ModuleType, target: str, func_name: str, *, found: object) -> NoReturn:
    offered = runnables(module)
    what = f"{target} has no function {func_name!r}" + (
        f" ({func_name} is a {type(found).__name__})" if found is not None else "")
    if not offered:
        raise CliError(f"{what}, and it defines no workflow (async def) or mode (a function returning a Cr) to run.")
    pick = suggest(func_name, offered)
    assert pick is not None
    lists = [f"{kind}s: {', '.join(n for n, k in offered.items() if k == kind)}"
             for kind in ("workflow", "mode") if kind in offered.values()]
    print(f"usage: {usage(getattr(module, pick), f'{target}:{pick}')}", file=sys.stderr)
    raise CliError(f"{what}; its {'; '.join(lists)}. Name one with FILE:FUNC, as above.")


def _usage_error(func: Callable[..., Any], shown: str, problem: str) -> NoReturn:
    print(f"usage: {usage(func, shown)}", file=sys.stderr)
    raise CliError(problem)


def _type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


# -- levrt.run(...) at import ------------------------------------------------------------------------


class _CheckedAtImport(BaseException):
    """Stops the import of a file checked for ``--in-cluster`` at its ``levrt.run(...)``: that call
    runs in the Pod, not here. A BaseException so the file's own ``except Exception`` lets it pass."""


@dataclasses.dataclass
class _ImportedRuns:
    """Takes over the ``levrt.run(...)`` calls a file makes while ``levrt run`` imports it."""

    target: str
    func: str | None
    raw: list[str]
    check_only: bool
    job: Callable[[Awaitable[Any], Settings | None, str | None], Any]
    started: bool = False
    values: list[Any] = dataclasses.field(default_factory=list)

    def __call__(self, main: Awaitable[Any], *, settings: Settings | None, kubeconfig: str | None) -> Any:
        name = getattr(getattr(main, "cr_code", None), "co_name", None)
        if self.raw or (self.func is not None and self.func != name):
            _close(main)
            asked = f"{self.func or DEFAULT_FUNC}" + (f" with {' '.join(self.raw)}" if self.raw else "")
            raise CliError(
                f"{self.target} calls levrt.run({name or '...'}(...)) when imported{_where()}, and that call is its "
                f"job: levrt run cannot run {asked} as well. Put the call under `if __name__ == \"__main__\":` "
                "(python FILE still runs it) to run FILE:FUNC with arguments."
            )
        if self.check_only:
            _close(main)
            raise _CheckedAtImport
        self.started = True
        value = self.job(main, settings, kubeconfig)
        self.values.append(value)
        return value


def _close(main: Awaitable[Any]) -> None:
    """Close a coroutine that will not run (no "never awaited" warning on top of the message)."""
    if inspect.iscoroutine(main):
        main.close()


def _where() -> str:
    """`` (line N)``: the line of the file that called ``levrt.run``, the first frame outside levrt."""
    package = str(pathlib.Path(__file__).resolve().parents[1])
    for frame in reversed(traceback.extract_stack()):
        if not frame.filename.startswith(package) and "importlib" not in frame.filename:
            return f" (line {frame.lineno})"
    return ""


# -- running it --------------------------------------------------------------------------------------


def _print_value(value: Any) -> None:
    if value is not None:
        print(json.dumps(value, indent=2, default=str) if not isinstance(value, str) else value)


def _terminated(attempt: _Attempt) -> int:
    if attempt.handed_over:
        print("levrt run: this orchestration Pod is going away (SIGTERM); its job goes on in the next Pod "
              "of its Kubernetes Job.", file=sys.stderr)
        return EXIT_HANDED_OVER
    print("levrt run: terminated (SIGTERM); the job's Pods were deleted.", file=sys.stderr)
    return EXIT_TERMINATED


def _orchestration_failed(exc: Exception) -> int:
    """The user's orchestration raised. Tasks that failed together (``Concurrent``): each one's
    message, which quotes its logs and events. Anything else came from the user's own code: its
    traceback, as Python would show it."""
    leaves = list(_leaves(exc))
    if isinstance(exc, BaseExceptionGroup) and all(isinstance(leaf, LevrtError) for leaf in leaves):
        print(f"levrt run: {exc.message}:", file=sys.stderr)
        for leaf in leaves:
            print(f"- {leaf}", file=sys.stderr)
    else:
        traceback.print_exception(exc)
        print("levrt run: the orchestration raised the exception above.", file=sys.stderr)
    return EXIT_FAILED


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _parse_env(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not name.replace("_", "").isalnum():
        raise CliError(f"--env {item!r}: use NAME=VALUE, e.g. --env TARGETS=10.0.0.0/24.")
    return name, value


def _over(own: Settings, args: argparse.Namespace) -> Settings:
    if args.namespace:
        own = own.replace(namespace=args.namespace)
    return own.replace(keep=True) if args.keep else own


async def _owner(kubeconfig: str | None) -> str:
    """Who this client is to the cluster (the owner of the jobs it runs in Pods)."""
    async with await Kube.connect(kubeconfig=kubeconfig) as kube:
        return (await identify(kube, kubeconfig=kubeconfig)).name


@dataclasses.dataclass
class _Attempt:
    """One ``levrt run``: what its job record says ran, and whether its job opened."""

    what: dict[str, Any]
    resume: int | None = None
    opened: bool = False
    handed_over: bool = False
    """Told to stop, it left its job to the next Pod of its Kubernetes Job (``Engine.hand_over``)."""


def _resume_in_pod() -> int | None:
    """The job an orchestration Pod resumes (``RESUME_ENV``, set by the client's ``--resume``)."""
    text = os.environ.get(RESUME_ENV, "").strip()
    return int(text) if text.isdigit() else None


def _record_failure(exc: Exception, args: argparse.Namespace, attempt: _Attempt) -> None:
    """Open a job only to record that this run failed with ``exc`` before it could open its own."""
    attempt.resume = None  # the job that records the failure runs nothing

    async def fail() -> NoReturn:
        raise exc

    with contextlib.suppress(Exception):  # the failure itself is what the Pod's log must show
        asyncio.run(_run(fail, settings=settings_of(args), kubeconfig=args.kubeconfig, progress=False,
                         attempt=attempt))


async def _run(main: Awaitable[Any] | Callable[[], Awaitable[Any]], *, settings: Settings, kubeconfig: str | None,
               progress: bool, attempt: _Attempt) -> Any:
    """Open the job, then start ``main`` (not before: a job that cannot open leaves no coroutine
    that was never awaited; one made before, by a file's ``levrt.run(...)``, is closed)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # SIGTERM (an orchestration Pod being deleted, a `kill`) ends the job like Ctrl-C does: the
    # run is cancelled and the session deletes the job's Pods before the process exits. A detached
    # orchestration whose Kubernetes Job goes on hands the job over to the Job's next Pod instead.
    current = asyncio.current_task()
    opened: list[Any] = []
    stopping: list[asyncio.Task[None]] = []

    async def stop() -> None:
        if opened and await opened[0].job_goes_on():
            opened[0].handing_over = attempt.handed_over = True
        assert current is not None
        current.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        if current is not None:
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGTERM, lambda: stopping.append(asyncio.get_running_loop().create_task(stop())))
    async with contextlib.AsyncExitStack() as stack:
        try:
            engine = await stack.enter_async_context(session(settings=settings, kubeconfig=kubeconfig,
                                                             what=attempt.what, resume=attempt.resume))
        except BaseException:
            if inspect.iscoroutine(main):
                main.close()
            raise
        opened.append(engine)
        attempt.opened = True
        awaited = main if inspect.isawaitable(main) else main()
        if not progress or not sys.stderr.isatty():
            value = await plain_progress(engine, awaited)
        else:
            value = await live_progress(engine, awaited)
        engine.job_record.value = value
        return value


RUN = Command("run", "run a workflow or a mode as one job, with live progress", _arguments, run_command)
