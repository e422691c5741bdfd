"""The fault suite shares the end-to-end fixtures (the runtime image, settings, a job, the CLI's
environment): the faults are end-to-end runs with something broken on purpose."""

from tests.e2e.conftest import cli_env, job, levrt_settings, runtime_image

__all__ = ["cli_env", "job", "levrt_settings", "runtime_image"]
