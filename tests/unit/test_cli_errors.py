"""Every ``levrt`` command fails cleanly: the cluster unreachable, the store unreachable, RBAC
denying it, malformed arguments. Each gives one line on stderr, ``levrt <command>: ...``, and the
documented exit code (1: the operation failed, 2: a usage mistake), never a traceback.

Why a matrix: these paths are the ones nobody runs by hand until the day the cluster is down,
and each command reaches the cluster and the store its own way. The unreachable cluster and
store are real closed ports (refused at once, no cluster needed); RBAC is the fake apiserver
answering 403 to everything.
"""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from levrt._cli import main
from levrt._clients.api import Request, Response
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from tests.fakes import FakeApiServer, FakeMongo, status_body

SCHEMA = "ts/issues@1.0"
FLOW = """
from levrt import Cr

async def main():
    await (await Cr("busybox:1.36", cmd=["true"]).start()).done()
"""


class DenyingApiServer(FakeApiServer):
    """An apiserver whose RBAC allows this account nothing."""

    def _hooked(self, request: Request) -> Response | None:
        return Response(403, status_body(403, f'{request.path} is forbidden: User "alice" cannot '
                                              f'{request.method.lower()} it', reason="Forbidden"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "words.txt").write_text("admin\nroot\n")
    yield


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when this returns: connections are refused


# What every command is run with (valid arguments; the condition makes it fail).
COMMANDS = {
    "ps": ["ps"],
    "logs": ["logs", "3.0"],
    "kill": ["kill", "3.0"],
    "attach": ["attach", "3.0"],
    "get": ["get", SCHEMA],
    "schemas": ["schemas"],
    "put": ["put", "words.txt"],
    "gc": ["gc"],
    "doctor": ["doctor"],
    "run": ["run", "flow.py"],
}
CLUSTER_COMMANDS = ["ps", "logs", "kill", "attach", "get", "schemas", "put", "gc", "doctor", "run"]
STORE_COMMANDS = ["get", "schemas", "put", "run", "doctor", "ps"]


def one_clean_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    captured = capsys.readouterr()
    if command == "doctor":  # its report is its output: the failed check is a line of the table
        lines = [line for line in captured.out.splitlines() if line.startswith("FAIL")]
        assert lines, captured.out
        text = lines[0]
    else:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        text = lines[0]
        assert text.startswith(f"levrt {command}: "), text
    assert "Traceback" not in captured.out + captured.err
    return text


@pytest.mark.parametrize("command", CLUSTER_COMMANDS)
def test_the_cluster_unreachable(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters: [{{name: t, cluster: {{server: 'https://127.0.0.1:{closed_port()}'}}}}]\n"
        "users: [{name: t, user: {token: x}}]\ncontexts: [{name: t, context: {cluster: t, user: t}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # and no LEVRT_STORE_URI: get/put ask the cluster
    assert main(COMMANDS[command]) == 1
    text = one_clean_line(capsys, command)
    assert "127.0.0.1" in text and ("Is the cluster running" in text or "could not be read" in text), text


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_the_store_unreachable(command: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApiServer(namespaces=["levrt"])
    mongo = FakeMongo()
    mongo.unreachable = ("127.0.0.1:30017: [Errno 111] Connection refused (configured timeouts: connectTimeoutMS: "
                         "10000.0ms), Timeout: 10.0s, Topology Description: <TopologyDescription ...>")
    monkeypatch.setenv("LEVRT_STORE_URI", "mongodb://127.0.0.1:30017/")
    with use_transport(lambda: api), use_client(mongo.client):
        assert main(COMMANDS[command]) == 1
    text = one_clean_line(capsys, command)
    assert "Connection refused" in text, text
    assert "Topology" not in text  # PyMongo's screenful stays out


# PyMongo's background monitor may still hold its refused socket when the command's loop ends;
# it is collected here, under this test's filter, not during a later test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("command", ["get", "schemas", "put"])
def test_a_real_closed_store_port(command: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", f"mongodb://127.0.0.1:{closed_port()}/?serverSelectionTimeoutMS=300")
    assert main(COMMANDS[command]) == 1
    gc.collect()
    text = one_clean_line(capsys, command)
    assert "did not answer" in text and "Connect call failed" in text and "Topology" not in text, text


@pytest.mark.parametrize("command", CLUSTER_COMMANDS)
def test_rbac_denies_it(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    api = DenyingApiServer(namespaces=["levrt"])
    mongo = FakeMongo()
    with use_transport(lambda: api), use_client(mongo.client):
        assert main(COMMANDS[command]) == 1
    text = one_clean_line(capsys, command)
    assert "403" in text or "forbidden" in text.lower() or "not allowed" in text.lower(), text


MALFORMED = [
    (["get", "bad schema"], "schema='bad schema' is not '<namespace>/<name>@<major>.<minor>'"),
    (["get", "ts/issues"], "Did you forget the version, e.g. 'ts/issues@1.0'?"),
    (["get", SCHEMA, "--ns", "a$b"], "--ns 'a$b'"),
    (["get", SCHEMA, "--task", "1"], "--task needs --job"),
    (["get", SCHEMA, "--job", "x"], "argument --job: 'x' is not a job: give its id (e.g. 8, see `levrt ps`) or "
                                     "'latest'"),
    (["get", SCHEMA, "--job", "-3"], "argument --job: '-3' is not a job"),
    (["get", SCHEMA, "--limit", "-1"], "--limit -1: give a number of records (0 for all of them)."),
    (["get", "ux/dns1.0"], "Did you mean 'ux/dns@1.0'?"),
    (["get", "ux dns@1.0"], "Did you mean 'ux/dns@1.0'?"),
    (["schemas", "-o", "yaml"], "-o 'yaml': the schemas print as table or json."),
    (["schemas", "--bogus"], "unrecognized arguments: --bogus"),
    (["logs", "3.x"], "'3.x' is not a task"),
    (["kill", "3.0", "-s", "SIGNOPE"], "SIGNOPE"),
    (["attach", "3.0", "--timeout", "soon"], "'soon' is not a duration"),
    (["gc", "--older-than", "1 week"], "'1 week' is not a duration"),
    (["put", "no-such-file"], "'no-such-file' is not a file"),
    (["run", "no_such_flow.py"], "no such file"),
    (["check", "no_such_tool.py"], "no such file"),
    (["ps", "--job", "three"], "invalid int value: 'three'"),
    (["ps", "--bogus"], "unrecognized arguments: --bogus"),
    (["ps", "--all", "--job", "3"], "--job N lists one job's tasks: --all, --all-users and --limit choose among jobs"),
    (["ps", "--all-users", "--job", "3"], "--job N lists one job's tasks"),
    (["ps", "--limit", "-1"], "--limit -1: give a number of jobs (0 for all of them)."),
    (["ps", "--limit", "many"], "invalid int value: 'many'"),
    (["ps", "--all", "--limit", "5"], "argument --limit: not allowed with argument --all"),
    (["ps", "-o", "yaml"], "invalid choice: 'yaml'"),
]


@pytest.mark.parametrize(("argv", "said"), MALFORMED, ids=[" ".join(a) for a, _ in MALFORMED])
def test_malformed_arguments_are_a_usage_error(argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApiServer(namespaces=["levrt"])
    with use_transport(lambda: api):  # nothing may be sent: the arguments are checked first
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own checks
            code = int(exc.code or 0)
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"levrt {argv[0]}: ") and said in lines[0], captured.err
    assert [r for r in api.requests if r.method != "GET" or "/pods" not in r.path] == []


def test_get_checks_the_schema_as_the_sdk_does(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from levrt import Cr
    from levrt.errors import SchemaError

    with pytest.raises(SchemaError) as sdk:
        Cr("busybox:1.36", "bad schema")
    assert main(["get", "bad schema"]) == 2
    assert str(sdk.value) in capsys.readouterr().err
    monkeypatch.setenv("LEVRT_STORE_URI", "mongodb://127.0.0.1:30017/")
    for accepted in ("default", "jobs"):  # not schemas, but collections levrt writes
        with use_client(FakeMongo().client):
            assert main(["get", accepted]) == 0
