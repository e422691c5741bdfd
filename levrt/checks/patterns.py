"""Every pattern a value is checked against, written once.

Why one place: the same name rules (a DNS-1123 label, a label key) hold for a Cr's fields, the
run options and the Settings, and two copies of a regex drift apart. ``\\Z``, not ``$``, ends
each: ``$`` also matches before a trailing newline, which the apiserver (or the store) would get.
"""

from __future__ import annotations

import re

__all__ = [
    "DNS1123_LABEL",
    "DNS1123_SUBDOMAIN",
    "ENV_NAME_RE",
    "HOSTNAME_RE",
    "IMAGE_RE",
    "LABEL_NAME_RE",
    "PLATFORM_IMAGE_RE",
    "QUANTITY_RE",
    "REGISTRY_RE",
    "SCHEMA_RE",
]

SCHEMA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*@[0-9]+\.[0-9]+\Z")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
HOSTNAME_RE = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\Z"
)
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*\Z")
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:@+]*\Z")
# 1.x: ".user.tool:tag" names an image the platform built, in its registry (Settings.image_registry).
PLATFORM_IMAGE_RE = re.compile(
    r"^\.[a-z0-9]+([._-][a-z0-9]+)*"  # .user.tool
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?\Z"  # :tag, @digest
)
# A registry host (with an optional port) and an optional path: no scheme, no tag.
REGISTRY_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*\Z")
# A label name or value (and a label key's name part).
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
# A Kubernetes quantity: a decimal number and a suffix (binary SI, decimal SI or an exponent).
QUANTITY_RE = re.compile(
    r"^(?P<num>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?\Z"
)
