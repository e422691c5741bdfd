"""What the console's cluster tests share (``test_console``, ``test_browser``): kubectl in the test
namespace, ServiceAccount tokens bound to the chart's Roles, a sleeping tool to cancel, publishing.

Why a module and not fixtures in conftest: each test module makes its own accounts (their names say
whose they are, and the RBAC matrix test must not meet them), so these are plain functions.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SLEEPY = '''
    """A test tool whose one mode sleeps (a job to cancel)."""
    import os

    from levrt import Cr, annot


    @annot.meta(desc="sleep a while", params=[annot.Param("seconds", "how long", regex=r"^[0-9]+$")])
    def nap(seconds: int = 300) -> Cr:
        return Cr(os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36"), cmd=["sleep", str(seconds)])


    __lev__ = annot.meta([nap], desc="sleeps", tags=["sleepy-test"])
'''


def kubectl(kube_cluster: Any, *args: str, check: bool = True) -> str:
    done = subprocess.run(["kubectl", "--kubeconfig", kube_cluster.kubeconfig, "-n", kube_cluster.namespace, *args],
                          capture_output=True, text=True, timeout=180)
    if check and done.returncode:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done.stdout


def make_tokens(kube_cluster: Any, roles: Mapping[str, str | None], account: str) -> dict[str, str]:
    """For each ``who: role``, a ServiceAccount ``account.format(who)`` bound to the chart's Role (None:
    to none), and a token of it."""
    made = {}
    for who, role in roles.items():
        name = account.format(who)
        kubectl(kube_cluster, "create", "serviceaccount", name, check=False)
        if role:
            kubectl(kube_cluster, "create", "rolebinding", name, "--role", role,
                    f"--serviceaccount={kube_cluster.namespace}:{name}", check=False)
        made[who] = kubectl(kube_cluster, "create", "token", name, "--duration", "1h").strip()
    return made


def remove_accounts(kube_cluster: Any, roles: Iterable[str], account: str) -> None:
    for who in roles:
        kubectl(kube_cluster, "delete", "rolebinding,serviceaccount", account.format(who), "--ignore-not-found",
                check=False)


def sleepy_tool(root: Path, namespace: str) -> Path:
    """The sleeping tool's package folder, ``lev/<namespace>/sleepy`` under ``root``."""
    folder = root / "lev" / namespace / "sleepy"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(SLEEPY))
    return folder


def publish(cli_env: Mapping[str, str], *folders: str | Path) -> None:
    for folder in folders:
        done = subprocess.run([sys.executable, "-m", "levrt", "publish", str(folder)], env=dict(cli_env), cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
