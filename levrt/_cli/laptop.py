"""levrt on a laptop: ``levrt up``, ``down``, ``env`` and ``image build``.

Why a module of its own: these commands drive tools on the user's machine (Docker, kind, helm)
rather than the Kubernetes API, and they must work right after ``pip install levrt`` from any
directory: the chart and the kind config come from the package (``levrt._build.kind.packaged``),
and the runtime image is built from this very interpreter (``levrt._build.runtime``). What they
run is decided by the pure plans of ``levrt._build.kind``; here are the checks that come before
anything is created, the progress lines, and a failed step's name and output tail.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import shutil
import subprocess
import sys
from pathlib import Path

from levrt._build import bundle as bundle_builder
from levrt._build import progress
from levrt._build.kind import (
    KIND_NETWORK,
    KIND_STORE_PORT,
    NAMESPACE,
    NODEPORT_SERVICE,
    down_plan,
    env_lines,
    kube_context,
    packaged,
    up_plan,
)
from levrt._build.runtime import build_archive, cached_archive, runtime_ref
from levrt._cli.base import EXIT_OK, CliError, Command
from levrt._clients import resources
from levrt._clients.api import NotFound
from levrt._clients.kube import Kube
from levrt.errors import ClusterError

__all__ = ["DOWN", "ENV", "IMAGE", "UP"]

OUTPUT_TAIL = 15  # lines of a failed step's output shown with its error


def _run_step(title: str, cmd: list[str]) -> None:
    """Run one step, its output passed through indented; a failure names the step and shows the tail."""
    progress(title)
    print("  + " + " ".join(cmd), file=sys.stderr, flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
    except OSError as exc:
        raise ClusterError(f"{title}: cannot run {cmd[0]} ({exc})") from exc
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            tail.append(line.rstrip())
            print("    " + line.rstrip(), file=sys.stderr, flush=True)
    if proc.returncode != 0:
        shown = "\n".join("    " + line for line in tail)
        raise ClusterError(f"step failed: {title} (`{' '.join(cmd[:4])} ...` exited {proc.returncode}); "
                           f"its last output:\n{shown}")


def _output(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace")


def _need_tools(*tools: str) -> None:
    missing = [name for name in tools if shutil.which(name) is None]
    if missing:
        where = {"docker": "Docker (https://docs.docker.com/engine/install/)",
                 "kind": "kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
                 "helm": "helm (https://helm.sh/docs/intro/install/)"}
        raise CliError(f"{' and '.join(missing)} not found on PATH: install "
                       f"{', '.join(where.get(m, m) for m in missing)}, then run it again.")


def _docker_reachable() -> None:
    result = _output(["docker", "info", "--format", "{{.ServerVersion}}"])
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise CliError(f"the Docker daemon is not reachable (docker info: {detail[-1] if detail else 'failed'}); "
                       "start Docker, or check DOCKER_HOST and your permission on its socket.")


def _kind_clusters() -> list[str]:
    result = _output(["kind", "get", "clusters"])
    if result.returncode != 0:
        raise ClusterError(f"`kind get clusters` failed: {(result.stderr or result.stdout).strip()}")
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


# -- up -------------------------------------------------------------------------------------------


def _up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="levrt", help="kind cluster name (default: levrt)")
    parser.add_argument("--kind-config", metavar="FILE",
                        help="kind cluster config (default: the one levrt ships, mapping the store's NodePort "
                             f"{KIND_STORE_PORT} to 127.0.0.1)")
    parser.add_argument("--runtime-archive", metavar="FILE",
                        help="runtime image archive to load (default: built from this Python by "
                             "`levrt image build`, cached)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="values",
                        help="a chart value, passed to helm after levrt's own (repeatable), e.g. "
                             "--set store.engine=ferretdb")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")


def up_command(args: argparse.Namespace) -> int:
    """Create (or reuse) a kind cluster, load the runtime image into it and install the chart."""
    config = args.kind_config or str(packaged("kind-config.yaml"))
    chart = str(packaged("chart"))
    image = runtime_ref()
    for setting in args.values:
        if "=" not in setting or setting.startswith("="):
            raise CliError(f"--set {setting}: give a chart value as KEY=VALUE, e.g. --set store.engine=ferretdb.")
    for option, value in (("--kind-config", args.kind_config), ("--runtime-archive", args.runtime_archive)):
        if value and not Path(value).is_file():
            raise CliError(f"{option} {value}: no such file.")
    if args.dry_run:
        if not args.runtime_archive:
            print("# <runtime-archive>: the runtime image from this Python (levrt image build), cached",
                  file=sys.stderr)
        archive = args.runtime_archive or "<runtime-archive>"
        for _, cmd in up_plan(cluster=args.name, config=config, chart=chart, archive=archive, image=image,
                              exists=False, values=args.values):
            print(" ".join(cmd))
        return EXIT_OK

    # Everything a step needs is checked before the first one creates anything.
    _need_tools("docker", "kind", "helm")
    _docker_reachable()
    if not args.runtime_archive:
        bundle_builder.check_platform()
        bundle_builder.tool("patchelf")
        bundle_builder.tool("ldd")

    if args.runtime_archive:
        archive = args.runtime_archive
    else:
        progress(f"building the runtime image {image} from this Python ({sys.executable})")
        archive = str(cached_archive(image))
    exists = args.name in _kind_clusters()
    for title, cmd in up_plan(cluster=args.name, config=config, chart=chart, archive=archive, image=image,
                              exists=exists, values=args.values):
        _run_step(title, cmd)
    print(f"levrt is up: kind cluster {args.name} (kubeconfig context {kube_context(args.name)}), runtime image "
          f"{image}, store on 127.0.0.1:{KIND_STORE_PORT}.\n"
          f"Next: eval \"$(levrt env{'' if args.name == 'levrt' else ' --name ' + args.name})\"   "
          "then: levrt doctor", file=sys.stderr)
    return EXIT_OK


# -- down -----------------------------------------------------------------------------------------


def _down_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="levrt", help="kind cluster name (default: levrt)")


def down_command(args: argparse.Namespace) -> int:
    """Delete the kind cluster, then kind's Docker network once nothing is attached to it."""
    _need_tools("kind")
    removed: list[str] = []
    if args.name in _kind_clusters():
        for title, cmd in down_plan(args.name):
            _run_step(title, cmd)
        removed.append(f"kind cluster {args.name} (and its context {kube_context(args.name)})")
    else:
        print(f"no kind cluster {args.name}", file=sys.stderr)
    if shutil.which("docker") is not None and _output(["docker", "network", "inspect", KIND_NETWORK]).returncode == 0:
        # kind leaves its network behind; it goes only when no container (running or stopped, of
        # another kind cluster or anything else) is on it.
        users = _output(["docker", "ps", "-aq", "--filter", f"network={KIND_NETWORK}"]).stdout.split()
        if users or _kind_clusters():
            print(f"kept the Docker network {KIND_NETWORK}: {len(users)} container(s) still use it", file=sys.stderr)
        else:
            result = _output(["docker", "network", "rm", KIND_NETWORK])
            if result.returncode != 0:
                raise ClusterError(f"could not remove the Docker network {KIND_NETWORK}: "
                                   f"{(result.stderr or result.stdout).strip()}")
            removed.append(f"Docker network {KIND_NETWORK} (kind leaves it behind)")
    for what in removed:
        print(f"removed {what}")
    if not removed:
        print("Nothing to remove.", file=sys.stderr)
    return EXIT_OK


# -- env ------------------------------------------------------------------------------------------


def _env_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="levrt", help="kind cluster name (default: levrt)")
    parser.add_argument("-n", "--namespace", default=NAMESPACE, help=f"levrt's namespace (default: {NAMESPACE})")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")


def env_command(args: argparse.Namespace) -> int:
    """Print the shell lines that point levrt at the kind cluster's store, for ``eval "$(levrt env)"``."""

    async def go() -> list[str]:
        async with await Kube.connect(kubeconfig=args.kubeconfig, context=kube_context(args.name)) as kube:
            try:
                secret = await resources.get(kube, "Secret", "levrt-store", namespace=args.namespace)
                service = await resources.get(kube, "Service", NODEPORT_SERVICE, namespace=args.namespace)
            except NotFound as exc:
                raise ClusterError(f"levrt is not installed in namespace {args.namespace} of kind cluster "
                                   f"{args.name} ({exc}); run `levrt up` first.") from exc
        uri = base64.b64decode(secret.get("data", {}).get("uri", "")).decode()
        ports = [p.get("nodePort") for p in service.get("spec", {}).get("ports", []) if p.get("nodePort")]
        if not uri or not ports:
            raise ClusterError(f"the Secret levrt-store or the Service {NODEPORT_SERVICE} in {args.namespace} has "
                               "no store URI or NodePort; run `levrt up` again.")
        return env_lines(uri=uri, port=int(ports[0]), namespace=args.namespace)

    lines = asyncio.run(go())
    print(f"# levrt on kind cluster {args.name}: run  eval \"$(levrt env)\"")
    for line in lines:
        print(line)
    return EXIT_OK


# -- image build ----------------------------------------------------------------------------------


def _image_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="image_action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="write the runtime image as an OCI archive",
        description="Build levrt's runtime image from this Python (its minor version and cloudpickle match "
                    "yours by construction) without Docker or a base image, as an OCI archive for `kind load "
                    "image-archive` or `ctr images import`. Linux x86_64 only (needs ldd and patchelf); on "
                    "other systems build it with images/runtime/Dockerfile from levrt's sources.")
    build.add_argument("-o", "--output", default="levrt-runtime.tar", metavar="FILE",
                       help="archive to write (default: levrt-runtime.tar)")
    build.add_argument("--ref", default=None, help=f"image name (default: {runtime_ref()})")


def image_command(args: argparse.Namespace) -> int:
    bundle_builder.check_platform()
    output = Path(args.output)
    if output.is_dir():
        raise CliError(f"-o {args.output} is a directory; give the archive's file name, e.g. {output}/runtime.tar.")
    ref = args.ref or runtime_ref()
    build_archive(output, ref)
    print(output)
    print(f"Load it with: kind load image-archive {output} --name levrt   (or: ctr -n k8s.io images import {output})",
          file=sys.stderr)
    return EXIT_OK


UP = Command("up", "create a kind cluster with levrt installed (needs Docker, kind and helm)", _up_arguments,
             up_command)
DOWN = Command("down", "delete the kind cluster `levrt up` made, and kind's network once unused", _down_arguments,
               down_command)
ENV = Command("env", "print the shell lines for the kind cluster's store: eval \"$(levrt env)\"", _env_arguments,
              env_command)
IMAGE = Command("image", "image build: the runtime image from this Python, no Docker (Linux x86_64 only)",
                _image_arguments, image_command)
