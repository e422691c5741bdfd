"""Command line for the kind tier: ``python -m tests.kind up|down|build|env|status|delete``.

Why: CI and developers start Docker and the kind cluster the smoke test and `levrt up` use,
and tear both down leaving the host clean.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from tests.kind import cluster, dockerd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kind", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the Go tools, start dockerd, build or load the kind node image (cached)")
    sub.add_parser("up", help="build what is missing and create the kind cluster (idempotent); prints the kubeconfig")
    sub.add_parser("delete", help="delete the kind cluster only (what `levrt down` does); dockerd keeps running")
    sub.add_parser("down", help="delete the cluster, stop dockerd, remove its state, bridges and iptables rules")
    sub.add_parser("status", help="whether dockerd and the cluster run (JSON)")
    sub.add_parser("env", help='shell exports: eval "$(python -m tests.kind env)" (PATH, DOCKER_HOST, KUBECONFIG)')
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(cluster.build())
        elif args.command == "up":
            print(cluster.up())
        elif args.command == "delete":
            cluster.delete()
        elif args.command == "down":
            cluster.down()
        elif args.command == "status":
            report = cluster.status()
            print(json.dumps(report, indent=2))
            return 0 if report["cluster"] else 1
        elif args.command == "env":
            print("\n".join(cluster.env_lines()))
    except (dockerd.DockerError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
