"""Clients: the cluster (transport, watch, gated submit, signals) and the result store.

They move bytes and objects; they know no ``Cr``, no job and no task policy (``_core`` does).
Third-party client libraries are imported here and nowhere else.
"""
