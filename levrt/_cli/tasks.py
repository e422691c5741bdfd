"""A task's process as it runs or ran: ``levrt logs`` (its output, from the Pod or, once the Pod is
gone, from the store's archive) and ``levrt kill`` (a signal to its main process). Jobs and their
tasks are listed by ``levrt ps`` (``levrt._cli.ps``); what tasks stored is read by ``levrt get``
(``levrt._cli.results``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from levrt._cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    cluster,
    pod_of,
    resolve_pod,
    task_pod_missing,
)
from levrt._clients import signals
from levrt._clients.api import NotFound
from levrt._clients.pods import follow_logs, logs
from levrt._clients.pods import get as get_pod
from levrt._clients.store import Store, resolve_uri
from levrt._core.history import NoArchive, archived_log, no_archive_text
from levrt._shapes.names import task_of_pod
from levrt._shapes.podstatus import runs_runtime
from levrt.errors import LevrtError, StoreError
from levrt.settings import Settings

__all__ = ["KILL", "LOGS"]


# -- logs ---------------------------------------------------------------------------------------


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="JOB.TASK or Pod name (see `levrt ps`)")
    parser.add_argument("-f", "--follow", action="store_true", help="stream new output until the task ends")
    parser.add_argument("--tail", type=int, help="only the last N lines")
    parser.add_argument("-c", "--container", default="main", help="container (main, or a service name)")
    add_cluster_options(parser)


def logs_command(args: argparse.Namespace) -> int:
    pod = pod_of(args.task)
    if args.tail is not None and args.tail < 0:
        raise CliError(f"--tail {args.tail}: give a number of lines >= 0.")

    async def go() -> tuple[str, Settings] | None:
        """From the Pod (None), or the store's URI to read the archive from when the Pod is gone."""
        async with cluster(args) as (kube, settings):
            name = await resolve_pod(kube, settings.namespace, args.task)
            try:
                if not args.follow:
                    text = await logs(kube, settings.namespace, name, container=args.container, tail=args.tail)
                    sys.stdout.write(text)
                else:
                    await follow_logs(kube, settings.namespace, name, container=args.container, tail=args.tail,
                                      out=sys.stdout)
                return None
            except NotFound:
                if task_of_pod(name) is None:
                    raise
                try:
                    return settings.store_uri or await resolve_uri(kube, settings), settings
                except StoreError as exc:
                    raise _archive_unread(pod, exc) from None

    with task_pod_missing(pod):
        archive = asyncio.run(go())
    if archive is not None:
        uri, settings = archive
        job, task = task_of_pod(pod) or (0, 0)
        try:
            asyncio.run(_print_archived(uri, settings.database, job, task, pod=pod, container=args.container,
                                        tail=args.tail))
        except StoreError as exc:
            raise _archive_unread(pod, exc) from None
    return EXIT_OK


def _archive_unread(pod: str, exc: StoreError) -> StoreError:
    return StoreError(f"No task Pod {pod!r}, and its archived logs could not be read from the store: {exc}")


async def _print_archived(uri: str, database: str, job: int, task: int, *, pod: str, container: str,
                          tail: int | None) -> None:
    """Print a task's archived log (``levrt._core.logarchive``); say on stderr that it is the archive."""
    store = Store.connect(uri, database=database)
    try:
        found = await archived_log(store, job, task, container)
    except NoArchive as exc:
        text = no_archive_text(job, task, container, exc)
        raise CliError(f"No task Pod {pod!r}, and {text[0].lower()}{text[1:]}" if exc.containers is None
                       else f"{text.removesuffix('.')} (-c NAME).") from None
    finally:
        await store.close()
    text = found.text
    if tail is not None:
        text = "".join(text.splitlines(keepends=True)[-tail:] if tail else [])
    when = f" at {found.archived:%Y-%m-%d %H:%M:%S} UTC" if found.archived else ""
    print(f"levrt logs: Pod {found.pod or pod} is gone; this is its {container} output archived{when} "
          "when the task ended.", file=sys.stderr)
    if found.cut:
        print(f"levrt logs: the archive of {container} is incomplete: {found.cut}.", file=sys.stderr)
    sys.stdout.write(text)


# -- kill ---------------------------------------------------------------------------------------


def _kill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="JOB.TASK or Pod name (see `levrt ps`)")
    parser.add_argument("-s", "--signal", default="SIGINT", help="signal name or number (default: SIGINT)")
    add_cluster_options(parser)


def kill_command(args: argparse.Namespace) -> int:
    pod_name = pod_of(args.task)
    try:
        signum = signals.signal_number(args.signal)
    except LevrtError as exc:
        raise CliError(str(exc)) from None

    async def go() -> int:
        async with cluster(args) as (kube, settings):
            name = await resolve_pod(kube, settings.namespace, args.task)
            pod = await get_pod(kube, settings.namespace, name)
            result = await signals.deliver(kube, settings.namespace, name, signum, runtime=runs_runtime(pod))
            if result.exit_code != 0:
                print(result.stderr.decode(errors="replace"), file=sys.stderr)
                return EXIT_FAILED
            print(f"{signals.signal_name(signum)} delivered to {name}")
            return EXIT_OK

    with task_pod_missing(pod_name):
        return asyncio.run(go())


LOGS = Command("logs", "print a task's output", _logs_arguments, logs_command)
KILL = Command("kill", "send a signal to a task's main process", _kill_arguments, kill_command)
