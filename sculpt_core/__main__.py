"""Entry point for ``python -m sculpt_core``."""

import sys

from sculpt_core.cli import main

sys.exit(main())
