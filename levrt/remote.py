"""``@levrt.remote``: mark a function to run inside a task's container, and capture calls to it.

Why a wrapper instead of passing functions around: calling a remote function on the client
must *not* run it — ``scan(ip)`` has to become data (the function plus its arguments) that
travels to the container in the payload Secret. ``Remote`` is that marker; calling it returns a
``RemoteCall``. ``Cr(entry=...)`` accepts both: ``entry=fn`` means ``entry=fn()``.

Typed with ``ParamSpec`` so a type checker verifies the captured arguments against the
function's signature. Standard library only (the runtime imports this module too).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from levrt.errors import EntryError

__all__ = ["Remote", "RemoteCall", "as_call", "remote"]

P = ParamSpec("P")
R = TypeVar("R")


class RemoteCall(Generic[R]):
    """A captured call of a remote function: what runs inside the container."""

    __slots__ = ("args", "func", "kwargs")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        self.func = func
        self.args = tuple(args)
        self.kwargs = dict(kwargs)

    @property
    def name(self) -> str:
        """The qualified name of the function, for messages and logs."""
        return (
            f"{getattr(self.func, '__module__', '?')}.{getattr(self.func, '__qualname__', repr(self.func))}"
        )

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        text = ", ".join(parts)
        if len(text) > 80:
            text = text[:77] + "..."
        return f"<RemoteCall {self.name}({text})>"


class Remote(Generic[P, R]):
    """A function marked with ``@levrt.remote``. Calling it returns a ``RemoteCall``."""

    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(self, func: Callable[P, R]) -> None:
        if isinstance(func, Remote):
            func = func.func
        if not callable(func) or isinstance(func, type):
            raise EntryError(
                f"@levrt.remote decorates functions, got {func!r}. "
                "Put @levrt.remote right above a `def` or `async def`."
            )
        self.func: Callable[P, R] = func
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> RemoteCall[R]:
        try:
            inspect.signature(self.func).bind(*args, **kwargs)
        except TypeError as exc:
            raise EntryError(
                f"Cannot call remote function {self.func.__qualname__}{inspect.signature(self.func)} "
                f"with args={args!r} kwargs={kwargs!r}: {exc}. Pass the arguments the function takes."
            ) from None
        except ValueError:  # builtins without a signature: nothing to check
            pass
        return RemoteCall(self.func, args, kwargs)

    def __repr__(self) -> str:
        return f"<levrt.remote {getattr(self.func, '__module__', '?')}.{self.func.__qualname__}>"


def remote(func: Callable[P, R]) -> Remote[P, R]:
    """Mark ``func`` to run remotely: ``func(...)`` then captures a call usable as ``Cr(entry=...)``.

    Sync and ``async def`` functions are both allowed; closures, arguments and the module-level
    helpers they use travel with the call (cloudpickle).
    """
    return Remote(func)


def as_call(entry: object, *, where: str = "entry") -> RemoteCall[Any]:
    """Normalise what ``Cr(entry=...)`` accepts into a ``RemoteCall``, or raise ``EntryError``.

    Accepted: a ``RemoteCall`` (``entry=scan(ip)``) or a ``Remote`` taking no required arguments
    (``entry=entry``, which means ``entry=entry()``).
    """
    if isinstance(entry, RemoteCall):
        return entry
    if isinstance(entry, Remote):
        try:
            inspect.signature(entry.func).bind()
        except TypeError:
            raise EntryError(
                f"{where}={entry!r} needs arguments {inspect.signature(entry.func)}. "
                f"Call it to capture them: {where}={entry.func.__qualname__}(...)."
            ) from None
        except ValueError:
            pass
        return RemoteCall(entry.func, (), {})
    if inspect.iscoroutine(entry):
        name = entry.__qualname__
        entry.close()  # never awaited on purpose; don't warn on top of this error
        raise EntryError(
            f"{where} got a coroutine of {name}, which would run here, not in the container. "
            f"Decorate `async def {name.rsplit('.', 1)[-1]}` with @levrt.remote."
        )
    if inspect.isfunction(entry) or inspect.ismethod(entry) or inspect.isbuiltin(entry):
        name = getattr(entry, "__qualname__", repr(entry))
        raise EntryError(
            f"{where}={name} is a plain function. Did you forget @levrt.remote above "
            f"`def {name.rsplit('.', 1)[-1]}`? Only remote functions run inside the container."
        )
    if isinstance(entry, functools.partial):
        raise EntryError(
            f"{where} got functools.partial({entry.func!r}, ...). Make the function @levrt.remote "
            "and call it with the arguments instead: entry=fn(arg)."
        )
    raise EntryError(
        f"{where} must be a @levrt.remote function or the result of calling one, got "
        f"{type(entry).__name__} {entry!r}. Did you forget parentheses, or @levrt.remote?"
    )
