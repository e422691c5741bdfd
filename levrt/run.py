"""``levrt.run``: run one orchestration coroutine as one job, and clean up whatever happens.

Why a function of its own: a job needs a scope — connections opened, a job id allocated and
logged (``job: <id>`` on logger ``lev``), and on Ctrl-C or an exception the job's Pods deleted —
and ``asyncio.run`` gives no such scope. ``session()`` is that scope for callers that run their
own event loop (``async with session(): ...``).

``import levrt`` imports this module, and so does every task container (its entry is unpickled
against ``levrt``): the engine, its Kubernetes and store clients and ``asyncio`` load when a job
opens, not on import, which keeps a task's start-up to what the runtime itself needs.

``levrt run FILE`` imports FILE, and a file written as a script calls ``levrt.run(main())`` at
module level: while it imports, ``levrt run`` takes such calls over (``calls_at_import``) so the
job runs once, its way (``levrt._cli.run`` says how), not once here and once more there.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from levrt.errors import LevrtError
from levrt.settings import Settings

if TYPE_CHECKING:
    from levrt._core.engine import Engine

__all__ = ["ImportedRun", "calls_at_import", "run", "session", "what_of"]

T = TypeVar("T")


class ImportedRun(Protocol):
    """What takes over a ``levrt.run(...)`` made while ``levrt run`` imports a file: the awaitable
    and the call's own settings, and the value ``levrt.run`` returns to the file."""

    def __call__(self, main: Awaitable[Any], *, settings: Settings | None, kubeconfig: str | None) -> Any: ...


_taken_over: list[ImportedRun] = []


@contextlib.contextmanager
def calls_at_import(handler: ImportedRun) -> Iterator[None]:
    """While the block runs (``levrt run`` importing a file), ``levrt.run(...)`` hands its awaitable
    to ``handler`` instead of opening a job of its own."""
    _taken_over.append(handler)
    try:
        yield
    finally:
        _taken_over.remove(handler)


def run(main: Awaitable[T] | Callable[[], Awaitable[T]], *, settings: Settings | None = None,
        kubeconfig: str | None = None, resume: int | None = None) -> T:
    """Run ``main`` (a coroutine, or an async function taking no arguments) as one levrt job.
    ``resume``: a job whose succeeded tasks are not run again; an identical ``Cr`` (same image,
    entry code and arguments, command, environment, files, schema and run options) takes its record."""
    if inspect.iscoroutinefunction(main):
        main = main()
    if not inspect.isawaitable(main):
        raise LevrtError(
            f"levrt.run() needs a coroutine, got {main!r}. Did you forget parentheses? "
            "Write levrt.run(main()) for `async def main(): ...`."
        )
    if _taken_over:
        return _taken_over[-1](main, settings=settings, kubeconfig=kubeconfig)  # type: ignore[no-any-return]
    import asyncio  # loaded when a job runs, not by `import levrt` (see the module)

    return asyncio.run(_run(main, settings=settings, kubeconfig=kubeconfig, resume=resume))


@contextlib.asynccontextmanager
async def session(*, settings: Settings | None = None, kubeconfig: str | None = None,
                  what: Mapping[str, Any] | None = None, resume: int | None = None) -> AsyncIterator[Engine]:
    """Open a job: connect to the cluster and the store, allocate the job id, clean up at the end
    (``async with session() as job: ...``, for callers with their own event loop). ``what`` names
    what runs, for the job's record: ``{"target": ..., "args": [...]}``."""
    from levrt._core import engine  # the one deferred levrt import: the clients load when a job opens

    async with engine.session(settings=settings, kubeconfig=kubeconfig, what=what, resume=resume) as job:
        yield job


def what_of(main: Awaitable[Any]) -> dict[str, Any]:
    """What a job record says ran for ``levrt.run(main())``: the coroutine's qualified name."""
    name = getattr(main, "__qualname__", None) or type(main).__qualname__
    return {"target": str(name), "args": []}


async def _run(main: Awaitable[T], *, settings: Settings | None, kubeconfig: str | None,
               resume: int | None = None) -> T:
    async with contextlib.AsyncExitStack() as stack:
        try:
            job = await stack.enter_async_context(session(settings=settings, kubeconfig=kubeconfig,
                                                          what=what_of(main), resume=resume))
        except BaseException:
            if inspect.iscoroutine(main):
                main.close()  # never started: no "never awaited" warning on top of the real error
            raise
        value = await main
        job.job_record.value = value
        return value
