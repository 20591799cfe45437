"""Entry point for ``python -m sculpt_core``."""

import sys

from .cli import main

sys.exit(main())
