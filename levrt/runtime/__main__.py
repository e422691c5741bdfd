"""``python -m levrt.runtime``: the main container's command when a Cr has an entry."""

import sys

from levrt.runtime.process import main

sys.exit(main())
