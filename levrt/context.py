"""``lev`` (alias ``ctx``): collection namespaces on the client, the task's record inside an entry.

Why one object with two faces: the seeds use the same ``lev`` both ways — ``with lev / "example":``
in an orchestration prefixes collection names, ``lev.set(...)`` in an entry writes the task's
record. The two never meet: namespaces live in a ``ContextVar`` (each asyncio task of the client
sees its own, so concurrent orchestrations in one loop keep separate prefixes), and the in-task
API delegates to a binding that only the in-container runtime installs (``bind_task``).
Outside a task, ``lev.doc`` and ``lev.job_id`` are the running job's (1.x workflows record their
own progress with ``await lev.doc.set(...)``): they come from the job seam (``levrt._job``).

Standard library only: cloudpickle pickles ``levrt.lev`` by reference into entries.
"""

from __future__ import annotations

import contextvars
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO, Protocol

from levrt import _job
from levrt.errors import LevrtError, NamespaceError, OutsideTaskError

__all__ = [
    "DEFAULT_COLLECTION",
    "Lev",
    "Namespace",
    "TaskBinding",
    "bind_task",
    "collection_name",
    "ctx",
    "current_binding",
    "current_prefix",
    "lev",
]

DEFAULT_COLLECTION = "default"
SEPARATOR = "|"

_prefix: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("levrt_namespace", default=())
# Prefixes to restore on leaving a namespace, innermost last; context-local like the prefix itself.
_saved: contextvars.ContextVar[tuple[tuple[str, ...], ...]] = contextvars.ContextVar(
    "levrt_namespace_saved", default=()
)


class TaskBinding(Protocol):
    """What the in-container runtime provides for ``lev`` inside an entry."""

    @property
    def job_id(self) -> int: ...

    @property
    def task_id(self) -> int: ...

    def set(self, data: dict[str, Any]) -> None: ...

    def put(self, name: str, source: Any) -> str: ...

    def upload(self, source: Any) -> str: ...

    @property
    def doc(self) -> Any: ...


_binding: TaskBinding | None = None


def bind_task(binding: TaskBinding | None) -> TaskBinding | None:
    """Install (or with None remove) the running task's binding; returns the previous one.

    Process-global on purpose: one container runs one entry, and ``lev.set`` must work from any
    thread the entry starts.
    """
    global _binding
    previous, _binding = _binding, binding
    return previous


def current_binding() -> TaskBinding | None:
    return _binding


def _check_part(part: object) -> str:
    if not isinstance(part, str) or not part:
        raise NamespaceError(f"lev / {part!r}: a namespace is a non-empty str, e.g. lev / 'example'.")
    bad = [c for c in (SEPARATOR, "/", "$", "\0", "@") if c in part]
    if bad or part != part.strip():
        raise NamespaceError(
            f"lev / {part!r}: a namespace cannot contain {bad[0] if bad else 'surrounding spaces'!r} "
            "(it becomes part of a collection name). Use letters, digits, '.', '_' or '-'."
        )
    if len(part) > 60:
        raise NamespaceError(f"lev / {part!r}: a namespace is at most 60 characters.")
    return part


def current_prefix() -> str:
    """The collection prefix of this context: ``"a|b|"`` inside ``with lev / "a" / "b":``."""
    return "".join(p + SEPARATOR for p in _prefix.get())


def collection_name(schema: str | None) -> str:
    """The full collection of a task started here: prefix + schema (``default`` without one)."""
    return current_prefix() + (schema or DEFAULT_COLLECTION)


class Namespace:
    """``lev / "a" / "b"``: a context manager prefixing collection names with ``a|b|``.

    Entering composes with the namespace already in force; it is context-local, so several
    orchestrations running concurrently in one event loop keep their own prefixes. Reusable.
    """

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[str, ...]) -> None:
        self.parts = parts

    def __truediv__(self, part: str) -> Namespace:
        return Namespace((*self.parts, _check_part(part)))

    @property
    def prefix(self) -> str:
        return "".join(p + SEPARATOR for p in self.parts)

    def __enter__(self) -> Namespace:
        current = _prefix.get()
        _saved.set((*_saved.get(), current))
        _prefix.set(current + self.parts)
        return self

    def __exit__(self, *exc: object) -> None:
        saved = _saved.get()
        if not saved:  # exited in another context than entered: nothing of ours to restore
            return
        _saved.set(saved[:-1])
        _prefix.set(saved[-1])

    async def __aenter__(self) -> Namespace:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def __repr__(self) -> str:
        return "lev" + "".join(f" / {p!r}" for p in self.parts)


class Lev:
    """The ``lev`` object: ``lev / "ns"`` on the client; ``lev.set(...)`` inside an entry."""

    __slots__ = ()

    def __truediv__(self, part: str) -> Namespace:
        return Namespace((_check_part(part),))

    def _binding(self, what: str) -> TaskBinding:
        if _binding is None:
            raise OutsideTaskError(
                f"lev.{what} only works inside a @levrt.remote entry running in a task. On the client "
                "side, use the Document the task returned: doc = await cr; await doc.set(...)."
            )
        return _binding

    def set(self, data: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Upsert fields into this task's record (merges across calls). Inside an entry only."""
        binding = self._binding("set()")
        if data is not None and not isinstance(data, Mapping):
            raise LevrtError(
                f"lev.set({data!r:.60}): pass a dict of fields, or keywords: lev.set(key=value)."
            )
        fields = {**(data or {}), **kwargs}
        if fields:
            binding.set(fields)

    def update(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kwargs: Any) -> None:
        """Merge ``data`` into this task's record, like ``dict.update`` (the 1.x tutorial's way to
        store a result dict). Same as ``lev.set``: the fields given are replaced, the others kept."""
        binding = self._binding("update()")
        try:
            fields = dict(data, **kwargs)
        except (TypeError, ValueError):
            raise LevrtError(
                f"lev.update({data!r:.60}): pass a dict of fields (or key/value pairs, or keywords)."
            ) from None
        if fields:
            binding.set(fields)

    def put(self, name: str, source: str | os.PathLike[str] | bytes | BinaryIO) -> str:
        """Store a file as this task's artifact ``name`` (inside an entry only): ``source`` is a local
        path (``str`` or ``Path``), a binary file object, or bytes. The file is streamed into the
        store's file storage, never read whole into memory, and listed in the record; fetch it with
        ``await doc.artifact(name)``, ``await doc.download(name, path)`` or
        ``levrt get SCHEMA --job N --artifact NAME -o FILE``. Putting a name again replaces it.
        Returns the content's sha256."""
        binding = self._binding("put()")
        if isinstance(source, str):
            source = pathlib.Path(source)  # here a str is a path: content would be bytes
        return binding.put(name, source)

    @property
    def doc(self) -> Any:
        """This task's ``Document`` inside an entry (sync ``get``/``set``); in an orchestration, the
        running job's own record (a ``Document``: ``await lev.doc.set(progress=0.5)``)."""
        if _binding is not None:
            return _binding.doc
        runner = _job.current_or_none()
        if runner is None:
            raise OutsideTaskError(
                "lev.doc is the record of the running task (inside a @levrt.remote entry) or of the "
                "running job (in an orchestration run with levrt.run or `levrt run`); neither runs here."
            )
        return runner.job_document()

    @property
    def job_id(self) -> int:
        """The id of the running job (inside an entry, or in an orchestration)."""
        runner = _job.current_or_none()
        if _binding is None and runner is not None:
            return runner.job_id
        return self._binding("job_id").job_id

    @property
    def task_id(self) -> int:
        """The index of this task in its job (inside an entry)."""
        return self._binding("task_id").task_id

    def __repr__(self) -> str:
        return "levrt.lev"

    def __reduce__(self) -> str:
        return "lev"  # pickled by reference: the container's own levrt.context.lev


lev = Lev()
ctx = lev
