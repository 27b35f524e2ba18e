"""Where a long job is now, for whoever watches it: a child process reports its stage to the parent.

Stations call :func:`stage` with a short description ("import: node 'conv1' (Conv)"); it costs
nothing unless a listener is installed (see :mod:`edgec.isolation`), which then knows what the
compiler was doing if it crashes.
"""

from __future__ import annotations

_listener = None


def stage(text: str) -> None:
    if _listener is not None:
        _listener(text)


def listen(callback) -> None:
    """Send every later :func:`stage` to ``callback`` (None stops it)."""
    global _listener
    _listener = callback
