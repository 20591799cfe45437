"""One exception type for every user-facing failure, so pages and the CLI can show a message, not a traceback."""

from __future__ import annotations


class SculptError(ValueError):
    """A clear, user-facing error: bad input, unknown model, corrupt checkpoint, undefined operator."""
