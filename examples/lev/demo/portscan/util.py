"""What the portscan modes and workflow share on the client side: image, schemas, port ranges."""

from __future__ import annotations

import os

IMAGE = os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")
PORTS_SCHEMA = "demo/ports@1.0"
PATHS_SCHEMA = "demo/paths@1.0"

# The demo target the workflow scans: a busybox Pod serving HTTP on 8080 and a greeting on 2222.
TARGET_SCRIPT = (
    "mkdir -p /www && echo levrt-demo > /www/index.html && echo 'User-agent: *' > /www/robots.txt && "
    "httpd -p 8080 -h /www && while true; do echo 'SSH-2.0-levrt-demo' | nc -l -p 2222; done"
)
TARGET_PORTS = (2222, 8080)


def parse_ports(spec: str) -> list[int]:
    """``"22,80,8000-8003"`` → ``[22, 80, 8000, 8001, 8002, 8003]``."""
    ports: set[int] = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"bad port range {part!r}: use 1-65535, e.g. 22,80,8000-8100")
        ports.update(range(first, last + 1))
    return sorted(ports)


def chunk_ranges(chunks: int, bases: tuple[int, ...] = (2200, 8000), size: int = 100) -> list[str]:
    """``size`` ports from each base, in ``chunks`` ranges per base: ``2200-2249``, ``2250-2299``..."""
    chunks = max(1, min(int(chunks), size))
    step = -(-size // chunks)
    return [f"{low}-{min(low + step, base + size) - 1}" for base in bases for low in range(base, base + size, step)]
