"""What the Pod tells the task runtime: ``RuntimeConfig``, read once from the environment.

Why apart: the environment the builder set (names and defaults in ``levrt.podenv``) is, with the
payload, the runtime's whole input. Reading it in one place, and failing there with a message that
names the variable, keeps the task process (``levrt.runtime.process``) and the record
(``levrt.runtime.record``) free of environment lookups. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from levrt.podenv import (
    COLLECTION_ENV,
    DATABASE_ENV,
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    DEFAULT_STORE_WAIT,
    DEFAULT_TERMINATION_LOG,
    JOB_ENV,
    PAYLOAD_ENV,
    REPORT_KEY_ENV,
    REPORT_POD_ENV,
    STORE_URI_ENV,
    STORE_WAIT_ENV,
    TASK_ENV,
)
from levrt.runtime.termination import termination_log

__all__ = ["RuntimeConfig", "SetupError"]


class SetupError(Exception):
    """The container was started without what the runtime needs (an env var, the payload)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """What the Pod tells the runtime, through environment variables set by ``levrt._shapes.build``."""

    payload: str
    store_uri: str | None
    database: str
    collection: str
    job: int
    task: int
    termination_log: str = DEFAULT_TERMINATION_LOG
    store_wait: float = DEFAULT_STORE_WAIT
    """Seconds to wait after the entry for writes buffered during a store outage; what is still
    unwritten then is reported (exit ``EXIT_STORE``)."""
    report_key: str | None = None
    """Path of the task's key for reporting its end through the store (``levrt.endreports``); None:
    this runtime reports nothing (a service, a warm Pod's entry, a Pod built before reports)."""
    report_pod: str | None = None
    """The Pod's name, the report's id."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeConfig:
        missing = [k for k in (PAYLOAD_ENV, JOB_ENV, TASK_ENV) if not env.get(k)]
        if missing:
            raise SetupError(
                f"{', '.join(missing)} not set: levrt.runtime runs inside a levrt task Pod, which sets them. "
                "To run an entry by hand, use levrt.payload.loads_call on the payload."
            )
        try:
            job, task = int(env[JOB_ENV]), int(env[TASK_ENV])
        except ValueError:
            raise SetupError(
                f"{JOB_ENV}={env[JOB_ENV]!r}/{TASK_ENV}={env[TASK_ENV]!r} must be integers."
            ) from None
        try:
            store_wait = float(env.get(STORE_WAIT_ENV) or DEFAULT_STORE_WAIT)
        except ValueError:
            raise SetupError(f"{STORE_WAIT_ENV}={env[STORE_WAIT_ENV]!r} must be a number of seconds.") from None
        return cls(
            payload=env[PAYLOAD_ENV],
            store_uri=env.get(STORE_URI_ENV) or None,
            database=env.get(DATABASE_ENV) or DEFAULT_DATABASE,
            collection=env.get(COLLECTION_ENV) or DEFAULT_COLLECTION,
            job=job,
            task=task,
            termination_log=termination_log(env),
            store_wait=store_wait,
            report_key=env.get(REPORT_KEY_ENV) or None,
            report_pod=env.get(REPORT_POD_ENV) or None,
        )
