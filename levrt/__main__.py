"""``python -m levrt``: the CLI without the console script (how orchestration Pods start it)."""

import sys

from levrt._cli import main

sys.exit(main())
