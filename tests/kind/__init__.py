"""The kind tier: Docker, a kind node image built on this machine, and a kind cluster on it.

Why: `levrt up` targets kind on a laptop; our hosts reach no registry, so everything a kind node
needs (its base image, Kubernetes, the images kubeadm and kind would pull) is built here.
"""
