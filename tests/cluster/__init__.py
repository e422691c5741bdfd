"""A real single-node Kubernetes cluster for the test suite, built without any registry.

Why: levrt's integration tests need a real apiserver, kubelet, containers and DNS. Kind needs
a node image and Docker, neither of which exists on our machines, so this package builds the
components from Go modules and Debian packages and runs them as plain processes.
Entry point: ``python -m tests.cluster up|down|status|env|build|images``.
"""
