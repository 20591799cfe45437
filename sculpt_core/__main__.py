"""Entry point for ``python -m sculpt_core``."""

import os
import sys

from sculpt_core.cli import EXIT_INTERRUPTED, main

code = main()
if code == EXIT_INTERRUPTED:
    # Ctrl-C was handled (one line printed, no partial output), yet CPython 3.11 may still end the process by
    # re-sending SIGINT to itself at exit (seen in 3 of 4 interrupted `grid train` runs: status -2, not 130),
    # the mark of an unhandled KeyboardInterrupt. Leave with the status directly, after flushing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
