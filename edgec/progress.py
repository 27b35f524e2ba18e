"""Where a long job is now, for whoever watches it: a child process reports its stage to the parent.

Stations call :func:`stage` with a short description ("import: node 'conv1' (Conv)"); it costs
nothing unless a listener is installed (see :mod:`edgec.isolation`), which then knows what the
compiler was doing if it crashes.

Fault injection for the reliability tests (docs/RELIABILITY.md) hooks in here too: with
``EDGEC_INJECT_CRASH=TEXT`` the process dereferences a null pointer (a real SIGSEGV, as a TVM bug
would) at the first stage whose description contains TEXT; with ``EDGEC_INJECT_STALL=TEXT`` it
sleeps there, so a test can interrupt it at a known point.
"""

from __future__ import annotations

import os

_listener = None


def stage(text: str) -> None:
    if _listener is not None:
        _listener(text)
    crash, stall = os.environ.get("EDGEC_INJECT_CRASH"), os.environ.get("EDGEC_INJECT_STALL")
    if crash and crash in text:
        import ctypes

        ctypes.string_at(0)
    if stall and stall in text:
        import time

        time.sleep(600)


def listen(callback) -> None:
    """Send every later :func:`stage` to ``callback`` (None stops it)."""
    global _listener
    _listener = callback
