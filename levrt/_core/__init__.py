"""The core: one job's life (``engine``) and an orchestration run in a Pod (``incluster``).

It joins the public objects (``Cr``, ``Task``, ``Document``) to the clients and shapes below.
"""
