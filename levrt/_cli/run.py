"""``levrt run FILE[:FUNC]``: run an orchestration as one job, here or in a Pod of the cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

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
from levrt._cli.display import live_progress, plain_progress
from levrt._core.incluster import run_in_cluster
from levrt.errors import LevrtError
from levrt.run import session
from levrt.settings import Settings

__all__ = ["RUN"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="FILE[:FUNC]",
                        help="orchestration file or module, and the async function to run (default: main)")
    parser.add_argument("args", nargs="*", help="string arguments passed to the function")
    parser.add_argument("--in-cluster", action="store_true",
                        help="run the orchestration itself in a Pod under the levrt ServiceAccount")
    parser.add_argument("--detach", action="store_true",
                        help="run it in a Pod (as --in-cluster) and return once its job is open, printing the "
                             "job id: the job runs on without this client (levrt ps/get --job N follow it)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                        help="with --in-cluster: an environment variable for the orchestration Pod (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep task Pods after their results are read")
    parser.add_argument("--logs", action="store_true", help="print each task's logs when it ends")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a live display")
    add_cluster_options(parser)


def run_command(args: argparse.Namespace) -> int:
    target, _, func_name = args.target.partition(":")
    if args.in_cluster or args.detach:
        env = dict(_parse_env(item) for item in args.env)
        return run_in_cluster(target, func_name or "main", args.args, settings=settings_of(args),
                              kubeconfig=args.kubeconfig, env=env, detach=args.detach)
    if args.env:
        raise CliError("--env sets variables of the orchestration Pod; it needs --in-cluster or --detach. "
                       "For a local run, set them in your shell.")
    module = load_module(target)
    func = getattr(module, func_name or "main", None)
    if func is None or not inspect.iscoroutinefunction(func):
        raise CliError(
            f"{target} has no async function {func_name or 'main'!r}. "
            "Name it with FILE:FUNC, e.g. levrt run examples/workflow.py:scan_all."
        )
    settings = settings_of(args)
    if args.keep:
        settings = settings.replace(keep=True)
    try:
        result = asyncio.run(_run(lambda: func(*args.args), settings=settings, args=args))
    except asyncio.CancelledError:
        print("levrt run: terminated (SIGTERM); the job's Pods were deleted.", file=sys.stderr)
        return EXIT_TERMINATED
    except LevrtError:
        raise  # levrt's own: one line (levrt._cli.main)
    except Exception as exc:
        return _orchestration_failed(exc)
    if result is not None:
        print(json.dumps(result, indent=2, default=str) if not isinstance(result, str) else result)
    return EXIT_OK


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


async def _run(main: Callable[[], Awaitable[Any]], *, settings: Settings, args: argparse.Namespace) -> Any:
    """Open the job, then call ``main`` (not before: a job that cannot open leaves no coroutine
    that was never awaited)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # SIGTERM (an orchestration Pod being deleted, a `kill`) ends the job like Ctrl-C does: the
    # run is cancelled and the session deletes the job's Pods before the process exits.
    current = asyncio.current_task()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        if current is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    async with session(settings=settings, kubeconfig=args.kubeconfig) as engine:
        if args.no_progress or not sys.stderr.isatty():
            return await plain_progress(engine, main())
        return await live_progress(engine, main())


RUN = Command("run", "run an orchestration as one job, with live progress", _arguments, run_command)
