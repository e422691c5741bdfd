"""Sign-in and rights the Kubernetes way: a bearer token is reviewed by the apiserver (TokenReview)
and every action is a SubjectAccessReview on levrt's own resources in levrt's namespace.

Why the apiserver and not a user table of ours: the platform team already manages identities and
Roles there; a ServiceAccount token, an OIDC token or anything else the apiserver accepts signs in,
and ``kubectl create rolebinding`` grants the right. Nothing is decided here but caching: answers
are kept a few seconds (a page's burst of requests asks once), never longer than ``CACHE_SECONDS``,
so a revoked right stops working within that time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from levrt._clients import resources
from levrt._clients.kube import Kube
from levrt.errors import LevrtError

__all__ = [
    "API_GROUP",
    "CACHE_SECONDS",
    "RESOURCES",
    "Caller",
    "Forbidden",
    "Reviewer",
    "Unauthenticated",
    "bearer_token",
]

API_GROUP = "levrt.io"
"""The API group of levrt's resources in SubjectAccessReviews and in the chart's Roles (a chart test
pins them equal); no such API is served: the authorizer judges attributes, not objects."""
RESOURCES = ("tools", "jobs")
VERBS = ("get", "list", "create", "delete")
CACHE_SECONDS = 10.0
MAX_CACHED = 10_000


class Unauthenticated(LevrtError):
    """No token, or one the apiserver does not accept (HTTP 401)."""


class Forbidden(LevrtError):
    """A signed-in caller without the right for this action (HTTP 403); the message names the right."""


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who a token is, as the apiserver said: what a SubjectAccessReview and a job's owner need."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header; ``Unauthenticated`` without one."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Sign in: send an `Authorization: Bearer TOKEN` header with a token the cluster "
                              "accepts (e.g. `kubectl create token SERVICEACCOUNT -n NAMESPACE`).")
    return token.strip()


class _Expiring:
    """Answers kept for ``CACHE_SECONDS``, at most ``MAX_CACHED`` of them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._kept: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        found = self._kept.get(key)
        if found is None or found[0] < self._clock():
            return None
        return found[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._kept) >= MAX_CACHED:
            now = self._clock()
            self._kept = {k: v for k, v in self._kept.items() if v[0] >= now}
            if len(self._kept) >= MAX_CACHED:
                self._kept.clear()
        self._kept[key] = (self._clock() + CACHE_SECONDS, value)


class Reviewer:
    """The apiserver's answers about callers, through the console's own account (which may create
    TokenReviews and SubjectAccessReviews: ``system:auth-delegator``)."""

    def __init__(self, kube: Kube, namespace: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.namespace = namespace
        self._callers = _Expiring(clock)
        self._rights = _Expiring(clock)

    async def authenticate(self, token: str) -> Caller:
        """Who ``token`` is; ``Unauthenticated`` when the apiserver does not accept it."""
        key = hashlib.sha256(token.encode()).hexdigest()  # tokens themselves are not kept in memory
        known = self._callers.get(key)
        if known is not None:
            return known  # type: ignore[no-any-return]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        answer = await resources.create(self.kube, "TokenReview", review)
        status = answer.get("status") or {}
        user = status.get("user") or {}
        if not status.get("authenticated") or not user.get("username"):
            raise Unauthenticated("The cluster does not accept this token (expired, revoked, or of another "
                                  "cluster): sign in with a new one.")
        caller = Caller(str(user["username"]), str(user.get("uid") or ""), tuple(user.get("groups") or ()),
                        {k: tuple(v) for k, v in (user.get("extra") or {}).items()})
        self._callers.put(key, caller)
        return caller

    async def allowed(self, caller: Caller, verb: str, resource: str, name: str | None = None) -> bool:
        """Whether ``caller`` may ``verb`` levrt's ``resource`` (``tools``, ``jobs``) in levrt's namespace."""
        key = (caller.name, caller.uid, caller.groups, verb, resource, name)
        known = self._rights.get(key)
        if known is not None:
            return bool(known)
        attributes = {"namespace": self.namespace, "verb": verb, "group": API_GROUP, "resource": resource,
                      **({"name": name} if name else {})}
        spec: dict[str, Any] = {"user": caller.name, "groups": list(caller.groups),
                                "extra": {k: list(v) for k, v in caller.extra.items()},
                                "resourceAttributes": attributes}
        if caller.uid:
            spec["uid"] = caller.uid
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        answer = await resources.create(self.kube, "SubjectAccessReview", review)
        allowed = bool((answer.get("status") or {}).get("allowed"))
        self._rights.put(key, allowed)
        return allowed

    async def require(self, caller: Caller, verb: str, resource: str) -> None:
        """``Forbidden`` naming the missing right unless ``caller`` has it."""
        if not await self.allowed(caller, verb, resource):
            raise Forbidden(f"{caller.name} may not {verb} {resource}.{API_GROUP} in namespace {self.namespace}: "
                            f"ask for a Role granting it (the chart's levrt-viewer, levrt-runner or levrt-publisher).")
