"""The public surface: names exported, aliases, and what ``import levrt`` may pull in."""

from __future__ import annotations

import inspect
import pathlib
import subprocess
import sys
import tomllib

import levrt
from levrt import errors

REPO = pathlib.Path(__file__).resolve().parents[2]
PUBLIC = {
    "Cr",
    "Task",
    "Document",
    "File",
    "Digest",
    "remote",
    "lev",
    "ctx",
    "Concurrent",
    "run",
    "cli",
    "annot",
    "upload",
    "job",  # a past job opened from its records (levrt.history)
    "Job",
    "changes",  # what a job found that an earlier one did not (levrt.history)
    "Changes",
}


def test_all_is_exactly_the_public_names_and_errors() -> None:
    error_names = {
        n for n, o in vars(errors).items() if inspect.isclass(o) and issubclass(o, errors.LevrtError)
    }
    assert set(levrt.__all__) == PUBLIC | error_names
    assert len(levrt.__all__) == len(set(levrt.__all__))
    for name in levrt.__all__:
        assert getattr(levrt, name) is not None


def test_every_error_is_a_levrt_error_with_a_docstring() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.LevrtError) and cls.__doc__, name


def test_ctx_is_lev() -> None:
    assert levrt.ctx is levrt.lev


def test_annot_members() -> None:
    assert callable(levrt.annot.Param) and callable(levrt.annot.meta) and levrt.annot.ARGV.name == "argv"
    from levrt.annot.cats import Attck, BlackArch, Category

    assert issubclass(Attck, Category) and issubclass(BlackArch, Category)


def test_version_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert levrt.__version__ == project["version"]


def test_import_levrt_stays_light() -> None:
    code = (
        "import levrt, sys\n"
        "heavy = [m for m in ('kubernetes_asyncio', 'yaml', 'rich', 'aiohttp') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_runtime_modules_import_only_stdlib_and_cloudpickle() -> None:
    """payload/context/remote/errors are used inside the container before anything else."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import levrt.payload, levrt.context, levrt.remote, levrt.errors\n"
        "third = {m.partition('.')[0] for m in set(sys.modules) - before}\n"
        "shipped = {'levrt', 'cloudpickle', 'pymongo', 'bson', 'gridfs', 'dns'}\n"
        "third -= set(sys.stdlib_module_names) | shipped\n"
        "assert not third, third\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_cr_signature_matches_the_seeds() -> None:
    params = inspect.signature(levrt.Cr).parameters
    assert list(params) == [
        "image",
        "schema",
        "host",
        "entry",
        "cmd",
        "env",
        "files",
        "links",
        "ports",
        "services",
        # Run options beyond the seeds (SPEC 9), keyword-only like the seeds' own.
        "timeout",
        "resources",
        "capabilities",
        "node_selector",
        "tolerations",
        "retries",
        "cache",  # reuse an identical success of the last so long (issue 25)
        "warm",  # run the entry in a few long-lived Pods of its shape (issue 26)
    ]
    assert params["schema"].default is None and params["host"].default is False
