"""portscan: a levrt tool package in the levrt 1.x layout, ``lev/<namespace>/<tool>/``.

``lev/`` and ``lev/demo/`` are namespace packages (no ``__init__.py``); this folder is the tool.
Its metadata mixes a module (``scan``: two modes) and a workflow (``sweep``, from ``flows``,
which uses the other demo tool, ``lev.demo.banner``)::

    levrt check examples/lev/demo/portscan --format table
    cd examples && levrt check lev.demo.portscan
    levrt run examples/lev/demo/portscan/flows.py:sweep
"""

from levrt import annot
from levrt.annot.cats import Attck, BlackArch

from . import scan
from .flows import sweep

__lev__ = annot.meta(
    [scan, sweep],
    desc="TCP connect scan and HTTP path probe in pure Python sockets, and a sweep workflow",
    cats={Attck: [Attck.Discovery, Attck.Reconnaissance], BlackArch: [BlackArch.Scanner]},
    tags=["demo", "tcp", "http"],
)
