"""Every error levrt raises on purpose, under one root: ``LevrtError``.

Why a module of its own: users catch levrt's errors as one family (``except LevrtError``) or
one kind (``except FileSpecError``), and every layer — the pure ``Cr`` validation, the builder,
the store and cluster clients, the in-container runtime — raises from the same vocabulary.
This module imports nothing but the standard library so the runtime can use it too.

Messages follow one rule: name the offending value and say how to fix it.
The input errors also derive from ``ValueError``/``TypeError`` so generic handlers still work.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArgvError",
    "ClusterError",
    "CrError",
    "EntryError",
    "EnvError",
    "FileSpecError",
    "ImagePullError",
    "LevrtError",
    "LinkError",
    "MetaError",
    "NamespaceError",
    "OptionError",
    "OrchestrationError",
    "OutsideTaskError",
    "PayloadError",
    "PortError",
    "RecordNotFound",
    "SchemaError",
    "ServiceError",
    "SettingsError",
    "StoreError",
    "TaskFailed",
    "VersionMismatch",
]


class LevrtError(Exception):
    """Root of every error levrt raises on purpose."""


# -- describing a run (raised by Cr(...) before anything reaches the cluster) ------------------


class CrError(LevrtError, ValueError):
    """A ``Cr`` argument is malformed (image, cmd, host ...); the subclasses name the part."""


class SchemaError(CrError):
    """``schema`` is not ``<namespace>/<name>@<major>.<minor>``."""


class FileSpecError(CrError):
    """A ``files`` entry: relative or duplicate path, wrong File type, missing or too large file."""


class EnvError(CrError):
    """An ``env`` entry is not ``KEY=VALUE`` or uses a reserved name."""


class ServiceError(CrError):
    """A ``services`` entry: bad name (DNS-1123 label), not a ``Cr``, or nested services."""


class PortError(CrError):
    """A port is not an int in 1..65535, or is used twice in one Pod."""


class LinkError(CrError):
    """A ``links`` entry: bad alias, or a host that is not an IP address."""


class OptionError(CrError):
    """A run option (``timeout``, ``resources``, ``capabilities``, ``node_selector``,
    ``tolerations``, ``retries``) has a bad value."""


class EntryError(LevrtError, TypeError):
    """``entry`` is not a ``@levrt.remote`` function or the result of calling one."""


class PayloadError(LevrtError):
    """The entry call cannot be pickled, or its payload is too large."""


class VersionMismatch(PayloadError):
    """The payload was written by another Python minor or cloudpickle version than reads it."""


# -- other client-side input --------------------------------------------------------------------


class NamespaceError(LevrtError, ValueError):
    """A ``lev / "name"`` namespace part cannot be part of a collection name."""


class ArgvError(LevrtError, TypeError):
    """``levrt.cli(...)`` got a value it cannot turn into a command-line argument."""


class MetaError(LevrtError, ValueError):
    """``levrt.annot.meta`` got metadata it cannot describe as JSON."""


class SettingsError(LevrtError, ValueError):
    """A ``Settings`` field (or its ``LEVRT_*`` environment variable) is invalid."""


class OutsideTaskError(LevrtError, RuntimeError):
    """An in-task API (``lev.set``, ``lev.doc``) was used outside a running entry."""


# -- running ------------------------------------------------------------------------------------


class StoreError(LevrtError):
    """The result store (MongoDB) is unreachable or refused an operation."""


class RecordNotFound(LevrtError, LookupError):
    """A past job, or a task's archived logs, asked for by id is not in the store."""


class ClusterError(LevrtError):
    """The Kubernetes cluster is unreachable, too old, or refused an operation."""


class OrchestrationError(LevrtError):
    """An in-cluster orchestration (``levrt run --in-cluster``) could not be submitted or started."""


class TaskFailed(LevrtError):
    """A task ended without success.

    ``exit_code`` of the main container (None if it never ran), ``reason`` as Kubernetes or the
    runtime reported it (``Error``, ``OOMKilled``, ``DeadlineExceeded``, ``ErrImagePull`` ...),
    ``logs``: the tail of its output, ``task``: the ``levrt.Task`` (None if it never started).
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        reason: str = "",
        logs: str = "",
        task: Any = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason
        self.logs = logs
        self.task = task

    @property
    def logs_tail(self) -> str:
        """Alias of ``logs``: the tail of the main container's output."""
        return self.logs

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only state survives pickling (e.g. across processes or in ExceptionGroups).
        return (_rebuild_task_failed, (type(self), str(self), self.exit_code, self.reason, self.logs))


class ImagePullError(TaskFailed):
    """The image of a task cannot be pulled (wrong name or tag, or not loaded into the node)."""


def _rebuild_task_failed(
    cls: type[TaskFailed], message: str, exit_code: int | None, reason: str, logs: str
) -> TaskFailed:
    return cls(message, exit_code=exit_code, reason=reason, logs=logs)
