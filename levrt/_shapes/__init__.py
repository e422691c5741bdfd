"""Shapes: what levrt sends to and reads from Kubernetes, as plain dicts, with no I/O.

Names and labels, the objects of a task and of an in-cluster orchestration, and the reading of
Pod status. Everything here is pure, so it is snapshot-tested and dry-run by the apiserver; the
layers above (``_clients``, ``_core``) do the talking.
"""
