"""Hello world: one entry, run inside a busybox image that has no Python, result read back.

Run against the test cluster: python -m tests.cluster up && eval "$(python -m tests.cluster env)"
then python examples/hello.py [NAME]. Against any cluster with the levrt chart: set KUBECONFIG.
"""

import os
import sys

import levrt
from levrt import Cr, ctx

IMAGE = os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")


def hello(name: str) -> Cr:
    @levrt.remote
    def entry() -> None:
        import platform

        ctx.set(msg=f"Hello, {name}!", python=platform.python_version())

    return Cr(IMAGE, entry=entry())


async def main(name: str = "world") -> dict:
    doc = await hello(name)
    return await doc.get()


if __name__ == "__main__":
    print(levrt.run(main(*sys.argv[1:2])))
