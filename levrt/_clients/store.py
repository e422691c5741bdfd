"""The client side of the result store: job ids, task bookkeeping, users' collections.

Why a layer of its own: the engine needs three things from MongoDB — an atomic job counter,
a place for task status that never touches users' records, and collections to hand to
``Document`` — and nothing else should know how they are laid out (SPEC 4). PyMongo's async
API (``AsyncMongoClient``) is imported lazily so ``import levrt`` stays light. Like the
cluster transport, the client is a seam: ``use_client`` hands ``Store.connect`` another
(in-memory) client for fast tests of everything above.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from levrt._clients import resources
from levrt._clients.api import ApiError, NotFound
from levrt._clients.kube import Kube
from levrt._stored import is_duplicate, left_over
from levrt.errors import StoreError
from levrt.podenv import DEFAULT_DATABASE, STORE_SECRET_KEY, STORE_URI_ENV
from levrt.settings import STORE_SECRET, TASK_STORE_SECRET, Settings

__all__ = [
    "COUNTERS",
    "INTERNAL_PREFIX",
    "JOBS",
    "JOB_RECORDS",
    "JOURNAL",
    "LOGS",
    "MAX_UPDATES_PER_REQUEST",
    "TASKS",
    "Store",
    "is_internal",
    "journal_database",
    "opened",
    "resolve_uri",
    "short_error",
    "task_credentials",
    "task_key",
    "use_client",
]

INTERNAL_PREFIX = "levrt_"
"""What begins the name of every collection levrt keeps for itself (job counter, task status, the
file storage bucket): no schema can begin so, and ``levrt schemas`` leaves them out."""
COUNTERS = f"{INTERNAL_PREFIX}counters"
TASKS = f"{INTERNAL_PREFIX}tasks"
JOB_RECORDS = f"{INTERNAL_PREFIX}jobs"
"""Each job's own record, ``_id`` the job id: who ran what, where, and how it ended
(``levrt._shapes.jobrecord``). Not ``JOBS``, which holds what orchestrations store themselves."""
LOGS = f"{INTERNAL_PREFIX}logs"
"""Each ended task's container logs, ``_id`` its ``task_key`` (``levrt._core.logarchive``)."""
MAX_CLAIMS = 100
"""Job ids tried before giving up (each one already claimed by another job)."""
MAX_UPDATES_PER_REQUEST = 25
"""Update statements sent in one request at most. FerretDB (1.x, every backend) holds one of its
100 database connections per statement of an ``update`` command until the whole command ends: one
command of 100 statements, or a few large ones at once, take them all and the store then answers
no read or write of that database until it restarts (seen: a 1,000-task job's status records). At
25, four writers at full batches still leave it room; MongoDB itself does not care."""
JOURNAL = frozenset({COUNTERS, TASKS, JOB_RECORDS, LOGS})
"""levrt's own bookkeeping of jobs (ids, task status, job records with their owners, log archives):
kept in a database of its own (``journal_database``), which the chart's task user may not write, so
a scan that gains code execution in its container cannot forge who ran a job or how it ended. Task
containers write only users' collections and the file storage of the records database."""
JOURNAL_SUFFIX = "_journal"
# The jobs' own records (``lev.doc`` in an orchestration), ``_id = {"job": N}``: users' data, so
# shown by ``levrt get jobs`` like any schema, and without the ``levrt_`` prefix of internals.
JOBS = "jobs"

# Makes an AsyncMongoClient-like object from a URI; None: PyMongo's own.
_client_factory: contextvars.ContextVar[Callable[[str], Any] | None] = contextvars.ContextVar(
    "levrt_store_client_factory", default=None
)


@contextlib.contextmanager
def use_client(factory: Callable[[str], Any]) -> Iterator[None]:
    """Within this context ``Store.connect(uri)`` uses ``factory(uri)`` as its client."""
    token = _client_factory.set(factory)
    try:
        yield
    finally:
        _client_factory.reset(token)


def journal_database(database: str) -> str:
    """The database of ``JOURNAL`` beside the records database ``database`` (``levrt_journal``); the
    chart's ``levrt.journalDatabase`` (a chart test pins them equal)."""
    return database + JOURNAL_SUFFIX


class Store:
    """An open connection to the store's database (and its journal). Close it with ``await store.close()``."""

    def __init__(self, client: Any, *, database: str, uri_for_errors: str) -> None:
        self._client = client
        self._db = client[database]
        self._journal = client[journal_database(database)]
        self._uri = uri_for_errors

    @classmethod
    def connect(cls, uri: str, *, database: str = DEFAULT_DATABASE, timeout: float = 10.0) -> Store:
        """Prepare a client; the first operation connects (and fails with ``StoreError``)."""
        if not uri:
            raise StoreError(
                f"No store URI. Set {STORE_URI_ENV} (e.g. mongodb://127.0.0.1:30017/) or create the "
                "Secret 'levrt-store' with key 'uri' in the levrt namespace (the Helm chart does)."
            )
        factory = _client_factory.get()
        if factory is not None:
            return cls(factory(uri), database=database, uri_for_errors=_redact(uri))
        # pymongo costs a tenth of a second to import: only processes that use the store pay it.
        from pymongo import AsyncMongoClient

        # Timeouts written in the URI win (keyword arguments would override them): a script that
        # must fail fast on a missing store says so with ?serverSelectionTimeoutMS=500.
        options: dict[str, Any] = {key: int(timeout * 1000) for key in ("serverSelectionTimeoutMS", "connectTimeoutMS")
                   if key.lower() not in uri.lower()}
        try:
            client: Any = AsyncMongoClient(uri, **options)
        except Exception as exc:
            raise StoreError(f"Invalid store URI {_redact(uri)!r}: {exc}") from exc
        return cls(client, database=database, uri_for_errors=_redact(uri))

    async def close(self) -> None:
        await self._client.close()

    def collection(self, name: str) -> Any:
        """The ``AsyncCollection`` named ``name``: of users' records, or of levrt's journal (``JOURNAL``)."""
        return (self._journal if name in JOURNAL else self._db)[name]

    async def next_job_id(self) -> int:
        """Allocate a job id (1, 2, 3, ...): the counter's next value, claimed by inserting
        ``{"_id": "job.<n>"}`` next to it.

        Why the claim: the id names the job's Pods, so two jobs must never share one, and not
        every MongoDB-compatible store runs ``$inc`` atomically under concurrent callers (FerretDB
        on SQLite handed two jobs opened in the same millisecond the same value). A unique ``_id``
        is enforced by every store; a value someone else claimed is skipped.
        """
        counters = self.collection(COUNTERS)
        await self._continue_ids(counters)
        for _ in range(MAX_CLAIMS):
            try:
                counter = await counters.find_one_and_update(
                    {"_id": "job"}, {"$inc": {"seq": 1}}, upsert=True, return_document=True
                )
                job = int(counter["seq"])
                await counters.insert_one({"_id": f"job.{job}"})
            except Exception as exc:
                if is_duplicate(exc):
                    continue  # another job holds this id (or the upsert raced): take the next
                raise self.unreachable(exc) from exc
            return job
        raise StoreError(
            f"The store at {self._uri} handed out {MAX_CLAIMS} job ids that were already taken: its "
            f"counter ({COUNTERS}, _id 'job') is behind the claimed ids. Set its 'seq' to the highest "
            "claimed job id."
        )

    async def _continue_ids(self, counters: Any) -> None:
        """A store laid out before the journal had its own database kept the counter in the records
        database: ids go on from there, so a new job never shares an id with old records."""
        try:
            if await counters.find_one({"_id": "job"}) is not None:
                return
            before = await self._db[COUNTERS].find_one({"_id": "job"})
            if before and int(before.get("seq") or 0) > 0:
                await counters.update_one({"_id": "job"}, {"$max": {"seq": int(before["seq"])}}, upsert=True)
        except Exception as exc:
            if not is_duplicate(exc):
                raise self.unreachable(exc) from exc

    async def record_tasks(self, *, job: int, updates: Mapping[int, Mapping[str, Any]]) -> None:
        """Upsert the internal status of some tasks of one job (state, pod, timing, exit code), in
        requests of at most ``MAX_UPDATES_PER_REQUEST`` statements.

        Keyed by the string ``"<job>.<task>"`` (the task's id), with ``job`` and ``task`` as fields:
        every MongoDB-compatible store finds a string ``_id`` by its index, while FerretDB on SQLite
        scans the whole collection for a document ``_id``. Two upserts of a new ``_id`` may race in
        the store (E11000); those are sent again, when the record exists.
        """
        from pymongo import UpdateOne  # loaded with the client already (see connect): no cost here
        from pymongo.errors import BulkWriteError  # likewise

        def update(task: int, fields: Mapping[str, Any]) -> Any:
            return UpdateOne({"_id": task_key(job, task)}, {"$set": {**fields, "job": job, "task": task}}, upsert=True)

        statements = [update(task, fields) for task, fields in updates.items()]
        for start in range(0, len(statements), MAX_UPDATES_PER_REQUEST):
            pending = statements[start:start + MAX_UPDATES_PER_REQUEST]
            for attempt in (1, 2):
                try:
                    await self.collection(TASKS).bulk_write(pending, ordered=False)
                    break
                except BulkWriteError as exc:
                    refused = left_over(exc, pending)
                    if attempt == 2 or refused is None:
                        raise self.unreachable(exc) from exc
                    pending = refused
                except Exception as exc:
                    raise self.unreachable(exc) from exc

    async def set_fields(self, name: str, key: Any, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` of the record ``_id == key`` of collection ``name``, creating it if needed."""
        try:
            await self.collection(name).update_one(
                {"_id": key}, {"$set": {k: v for k, v in fields.items() if k != "_id"}}, upsert=True)
        except Exception as exc:
            raise self.unreachable(exc) from exc

    async def newest(self, name: str, query: Mapping[str, Any], *, limit: int) -> tuple[list[dict[str, Any]], int]:
        """At most ``limit`` records of ``name`` matching ``query`` (0: all), the highest ``_id`` first,
        and how many match in all."""
        try:
            cursor = self.collection(name).find(dict(query)).sort([("_id", -1)])
            if limit:
                cursor = cursor.limit(limit)
            found = [doc async for doc in cursor]
        except Exception as exc:
            raise self.unreachable(exc) from exc
        total = await self.count(name, query) if limit and len(found) == limit else len(found)
        return found, total

    async def put_logs(self, job: int, task: int, doc: Mapping[str, Any]) -> None:
        """Write (or replace) the log archive of task ``job.task`` (``_id`` its ``task_key``)."""
        key = task_key(job, task)
        try:
            await self.collection(LOGS).replace_one({"_id": key}, {**doc, "_id": key}, upsert=True)
        except Exception as exc:
            raise self.unreachable(exc) from exc

    async def put_logs_many(self, docs: Mapping[tuple[int, int], Mapping[str, Any]]) -> None:
        """Write the log archives of several tasks (by ``(job, task)``) in one request; one whose
        archive exists (a retried task's) replaces it."""
        batch = [{**doc, "_id": task_key(job, task)} for (job, task), doc in docs.items()]
        try:
            await self.collection(LOGS).insert_many(batch, ordered=False)
        except Exception as exc:
            refused = left_over(exc, batch)
            if refused is None:
                raise self.unreachable(exc) from exc
            for doc in refused:
                await self.put_logs(int(doc["job"]), int(doc["task"]), doc)

    async def get_logs(self, job: int, task: int) -> dict[str, Any] | None:
        """The log archive of task ``job.task``, or None when there is none."""
        try:
            found = await self.collection(LOGS).find_one({"_id": task_key(job, task)})
        except Exception as exc:
            raise self.unreachable(exc) from exc
        return None if found is None else dict(found)

    async def task_records(self, job: int) -> list[dict[str, Any]]:
        """The status records of the tasks of ``job`` (``record_tasks``), in task order."""
        try:
            found = [doc async for doc in self.collection(TASKS).find({"job": job})]
        except Exception as exc:
            raise self.unreachable(exc) from exc
        return sorted(found, key=lambda doc: doc.get("task") if isinstance(doc.get("task"), int) else 1 << 62)

    async def collection_names(self) -> list[str]:
        """The names of every collection in the database, levrt's own included (``is_internal``)."""
        try:
            return sorted(await self._db.list_collection_names())
        except Exception as exc:
            raise self.unreachable(exc) from exc

    async def sizes(self) -> list[tuple[str, int, int]]:
        """(collection, documents, bytes) of every collection of the records database and the journal,
        as the store's ``collStats`` reports them."""
        found = []
        try:
            for db in (self._db, self._journal):
                for name in sorted(await db.list_collection_names()):
                    stats = await db.command("collStats", name)
                    found.append((name, int(stats.get("count") or 0), int(stats.get("size") or 0)))
        except Exception as exc:
            raise self.unreachable(exc) from exc
        return found

    async def count(self, name: str, query: Mapping[str, Any] | None = None) -> int:
        """How many records of collection ``name`` match ``query`` (all of them without one)."""
        try:
            return int(await self.collection(name).count_documents(dict(query or {})))
        except Exception as exc:
            raise self.unreachable(exc) from exc

    def unreachable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"The store at {self._uri} did not answer: {short_error(exc)}. Check that it runs "
            f"(kubectl -n levrt get pods) and that {STORE_URI_ENV} points at an address this "
            "machine can reach."
        )


async def resolve_uri(kube: Kube, settings: Settings) -> str:
    """The store URI this process uses: ``settings.store_uri``, else the platform's Secret."""
    if settings.store_uri:
        return settings.store_uri
    try:
        secret = await resources.get(kube, "Secret", settings.store_secret, namespace=settings.namespace)
    except ApiError as exc:
        raise StoreError(
            f"{STORE_URI_ENV} is not set and the Secret {settings.namespace}/{settings.store_secret} "
            f"could not be read ({exc}). Set {STORE_URI_ENV} to a store address this machine reaches."
        ) from exc
    return base64.b64decode(secret.get("data", {}).get(STORE_SECRET_KEY, "")).decode()


async def task_credentials(kube: Kube, settings: Settings) -> Settings:
    """``settings`` naming the Secret its tasks read the store URI from: one set on purpose
    (``task_store_secret``), else on the chart's store its task user's (``TASK_STORE_SECRET``) when
    that Secret exists (an older chart, or a store of the team's own, has none: ``store_secret``). An
    account that may not read it cannot tell, and takes the chart's."""
    if settings.task_store_secret is not None or settings.store_secret != STORE_SECRET:
        return settings
    try:
        await resources.get(kube, "Secret", TASK_STORE_SECRET, namespace=settings.namespace)
    except NotFound:
        return settings
    except ApiError:
        pass
    return settings.replace(task_store_secret=TASK_STORE_SECRET)


@contextlib.asynccontextmanager
async def opened(settings: Settings, *, kube: Kube | None = None, kubeconfig: str | None = None,
                 timeout: float | None = None) -> AsyncIterator[Store]:
    """The store this machine reaches, outside a running job (the commands that read the past,
    ``levrt.job``, ``levrt.upload``): ``settings.store_uri``, else the platform's Secret, read with
    ``kube`` or a connection made from ``kubeconfig``; closed afterwards."""
    uri = settings.store_uri
    if not uri:
        if kube is not None:
            uri = await resolve_uri(kube, settings)
        else:
            async with await Kube.connect(kubeconfig=kubeconfig) as made:
                uri = await resolve_uri(made, settings)
    store = Store.connect(uri, database=settings.database, **({} if timeout is None else {"timeout": timeout}))
    try:
        yield store
    finally:
        await store.close()


def task_key(job: int, task: int) -> str:
    """The ``_id`` of a task's records in levrt's own collections (status, log archive): ``"12.3"``.
    A string because FerretDB on SQLite finds only a string (or ObjectId) ``_id`` by its index and
    reads every record of the collection for any other query, the archives' logs included."""
    return f"{job}.{task}"


def is_internal(collection: str) -> bool:
    """Whether ``collection`` is levrt's own bookkeeping rather than users' records, and
    ``system.*``, the server's."""
    return collection.startswith((INTERNAL_PREFIX, "system."))


def short_error(exc: BaseException) -> str:
    """A driver error in one line: PyMongo appends its whole topology description (a screenful,
    the address twice) to a selection timeout; the first error is what the reader needs."""
    text = str(exc).split(", Timeout: ", 1)[0].split(" (configured timeouts:", 1)[0]
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def _redact(uri: str) -> str:
    """The URI without its password, for messages."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return uri
