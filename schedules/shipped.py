"""Databases tuned here and shipped with edgec, one folder per preset under ``databases/``.

A shipped database is applied to every compile for its preset whose target matches the CPU it
was tuned on. ``EDGEC_NO_SHIPPED_DB=1`` leaves it out (the benchmark's "untuned" column).
"""

from __future__ import annotations

import os

DATABASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "databases")


def shipped_database(preset: str) -> str | None:
    if os.environ.get("EDGEC_NO_SHIPPED_DB", "") not in ("", "0"):
        return None
    path = os.path.join(DATABASES, preset)
    return path if os.path.isfile(os.path.join(path, "edgec-tuning-db.json")) else None
