"""Progress lines for the cluster scripts: long steps say what they do and how far they are.

Why: a cold `up` builds Kubernetes for minutes; silence would look like a hang.
"""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def progress(message: str) -> None:
    print(f"progress: [{time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)
