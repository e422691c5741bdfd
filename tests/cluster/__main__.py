"""Command line for the test cluster: ``python -m tests.cluster up|down|status|env|build|images``.

Why: CI and developers start and stop the same cluster the pytest fixture uses.
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.cluster import gotools, node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build what is missing and start the cluster (idempotent); prints the kubeconfig")
    sub.add_parser("down", help="stop every process and remove state, mounts, network devices and iptables rules")
    sub.add_parser("status", help="which components run, and whether the apiserver is ready (JSON)")
    sub.add_parser("env", help='shell exports for the cluster: eval "$(python -m tests.cluster env)"')
    sub.add_parser("build", help="only build the Go tools (cached by go.sum)")
    sub.add_parser("packages", help="install the Debian packages the node and the runtime bundle need")
    sub.add_parser("images", help="build and import the test images into the running node")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(node.up())
        elif args.command == "down":
            node.down()
        elif args.command == "status":
            report = node.status()
            print(json.dumps(report, indent=2))
            return 0 if report["healthy"] else 1
        elif args.command == "env":
            print("\n".join(node.env_lines()))
        elif args.command == "packages":
            node.ensure_packages()
        elif args.command == "build":
            gotools.build_all()
        elif args.command == "images":
            from tests.cluster import images

            print("\n".join(images.import_test_images()))
    except node.ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
