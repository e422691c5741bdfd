"""``levrt.run``: run one orchestration coroutine as one job, and clean up whatever happens.

Why a function of its own: a job needs a scope — connections opened, a job id allocated and
logged (``job: <id>`` on logger ``lev``), and on Ctrl-C or an exception the job's Pods deleted —
and ``asyncio.run`` gives no such scope. ``session()`` is that scope for callers that run their
own event loop (``async with session(): ...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

from levrt._core.engine import session
from levrt.errors import LevrtError
from levrt.settings import Settings

__all__ = ["run", "session"]

T = TypeVar("T")


def run(main: Awaitable[T] | Callable[[], Awaitable[T]], *, settings: Settings | None = None,
        kubeconfig: str | None = None) -> T:
    """Run ``main`` (a coroutine, or an async function taking no arguments) as one levrt job."""
    if inspect.iscoroutinefunction(main):
        main = main()
    if not inspect.isawaitable(main):
        raise LevrtError(
            f"levrt.run() needs a coroutine, got {main!r}. Did you forget parentheses? "
            "Write levrt.run(main()) for `async def main(): ...`."
        )
    return asyncio.run(_run(main, settings=settings, kubeconfig=kubeconfig))


async def _run(main: Awaitable[T], *, settings: Settings | None, kubeconfig: str | None) -> T:
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(session(settings=settings, kubeconfig=kubeconfig))
        except BaseException:
            if inspect.iscoroutine(main):
                main.close()  # never started: no "never awaited" warning on top of the real error
            raise
        return await main
