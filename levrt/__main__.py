"""``python -m levrt``: the CLI without the console script (how orchestration Pods start it)."""

import sys

from levrt.commands import main

sys.exit(main())
