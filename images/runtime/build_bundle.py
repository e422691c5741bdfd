"""Build the levrt runtime bundle: a thin entry to ``levrt._build.bundle`` for the Dockerfile.

Why kept: ``images/runtime/Dockerfile`` and anyone's scripts ran this path; the builder itself
now ships inside levrt (``levrt image build`` uses it), so this only calls it. The same as
``python -m levrt._build.bundle [DEST] [--client-site DIR]``; needs levrt installed.
"""

from __future__ import annotations

import sys

from levrt._build.bundle import main

if __name__ == "__main__":
    sys.exit(main())
