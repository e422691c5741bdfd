"""Value checks: each field of a ``Cr``, each run option and each pattern, judged in one place.

Why one home: a value is judged the same way wherever it comes from (``Cr(resources=...)`` or
``LEVRT_RESOURCES``; a schema given to ``Cr`` or to ``levrt get``), each raising the specific
error that names the value, and each pattern (a DNS-1123 label, a label key...) is written once.
``Cr`` and ``Settings`` compose these checks; the CLI uses them to judge what it is given as the
SDK does. Imported in every task container (through ``levrt.cr``): the standard library only.

- ``patterns``: every regex, once;
- ``fields``: a Cr's own fields (image, schema, cmd, env, files, links, ports, capabilities,
  retries, service names);
- ``options``: the run options that Settings and Cr share (timeout, resources, node selector,
  tolerations).
"""

from __future__ import annotations

from levrt.checks.fields import (
    LINUX_CAPABILITIES,
    MAX_RETRIES,
    RESERVED_CONTAINER_NAMES,
    RESERVED_PATHS,
    check_cache,
    check_capabilities,
    check_cmd,
    check_env,
    check_file_path,
    check_files,
    check_image,
    check_links,
    check_mapping,
    check_ports,
    check_retries,
    check_schema,
    check_service_name,
    check_warm,
)
from levrt.checks.options import check_node_selector, check_resources, check_timeout, check_tolerations, quantity

__all__ = [
    "LINUX_CAPABILITIES",
    "MAX_RETRIES",
    "RESERVED_CONTAINER_NAMES",
    "RESERVED_PATHS",
    "check_cache",
    "check_capabilities",
    "check_cmd",
    "check_env",
    "check_file_path",
    "check_files",
    "check_image",
    "check_links",
    "check_mapping",
    "check_node_selector",
    "check_ports",
    "check_resources",
    "check_retries",
    "check_schema",
    "check_service_name",
    "check_timeout",
    "check_tolerations",
    "check_warm",
    "quantity",
]
