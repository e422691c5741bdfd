"""``levrt console``: reach the chart's ``levrt-console`` (its API and pages) from a laptop, and say how
to sign in.

Why through ``kubectl port-forward``: the console's Service is ClusterIP (the platform team decides
how, or whether, it is exposed), and the apiserver's port-forward uses the caller's own kubeconfig
rights, so nothing new is opened. The API then asks for a bearer token of its own: the one this
prints how to make, for a ServiceAccount bound to one of the chart's Roles.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from levrt._cli.base import EXIT_FAILED, EXIT_OK, CliError, Command, add_cluster_options, settings_of

__all__ = ["CONSOLE", "SERVICE", "SERVICE_PORT"]

SERVICE = "levrt-console"
SERVICE_PORT = 8080


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=SERVICE_PORT, help="local port (default: 8080; 0: any free one)")
    add_cluster_options(parser)


def console_command(args: argparse.Namespace) -> int:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise CliError("levrt console forwards a local port with kubectl, which is not on PATH: install it, or reach "
                       f"the Service {SERVICE} (port {SERVICE_PORT}) your own way.")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port}: a port number from 0 to 65535.")
    ns = settings_of(args).namespace
    command = [kubectl, *(["--kubeconfig", args.kubeconfig] if args.kubeconfig else []), "-n", ns,
               "port-forward", f"service/{SERVICE}", f"{args.port}:{SERVICE_PORT}"]
    forward = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None and forward.stderr is not None
        first = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
        if not first.startswith("Forwarding from"):
            forward.wait(timeout=10)
            why = (first + forward.stderr.read()).strip()
            print(f"levrt console: kubectl could not forward to {ns}/{SERVICE}: {why} (is the chart installed with "
                  "console.enabled?)", file=sys.stderr)
            return EXIT_FAILED
        local = first.split()[2]  # 127.0.0.1:PORT
        print(f"levrt console: the API is at http://{local}/api/v1 (its OpenAPI document: "
              f"http://{local}/api/v1/openapi.json), the pages at http://{local}/; Ctrl-C ends the forwarding.\n"
              "Sign in with a bearer token the cluster accepts, e.g. for a ServiceAccount bound to a levrt Role:\n"
              f"  kubectl -n {ns} create serviceaccount analyst\n"
              f"  kubectl -n {ns} create rolebinding analyst-runs --role levrt-runner --serviceaccount {ns}:analyst\n"
              f"  TOKEN=$(kubectl -n {ns} create token analyst)\n"
              f"  curl -H \"Authorization: Bearer $TOKEN\" http://{local}/api/v1/tools", flush=True)
        return EXIT_OK if forward.wait() == 0 else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if forward.poll() is None:
            forward.terminate()
            forward.wait(timeout=10)


CONSOLE = Command("console", "forward a local port to the platform's HTTP API (levrt-console) and say how to sign in",
                  _arguments, console_command)
