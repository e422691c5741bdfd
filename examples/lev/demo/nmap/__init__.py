"""nmap: the seed's scanner as a levrt tool package (1.x layout), running Debian's real nmap.

Modes (``scan.py``): ``tcp`` (connect scan), ``port_os`` (SYN scan and OS detection, NET_RAW),
``alive`` (host discovery from the node's network, ``host=True``) and ``raw`` (your own nmap
options); each stores nmap's XML report parsed (hosts, states, ports and services, OS matches)
in ``demo/nmap@1.0``. Workflow (``flows.py``): ``sweep`` fans out over targets with
``Concurrent``. The image is ``LEVRT_NMAP_IMAGE`` (default: the test cluster's nmap image)::

    levrt check examples/lev/demo/nmap --format table
    levrt run examples/lev/demo/nmap/flows.py:sweep 10.244.0.12,10.244.0.13 22,80,6379
"""

from levrt import annot
from levrt.annot.cats import Attck, BlackArch

from . import scan
from .flows import sweep

__lev__ = annot.meta(
    [scan, sweep],
    desc="nmap port scans, OS detection and host discovery, stored as parsed reports, and a sweep workflow",
    cats={Attck: [Attck.Discovery, Attck.Reconnaissance], BlackArch: [BlackArch.Scanner, BlackArch.Recon]},
    tags=["nmap", "scan"],
)
