"""Databases tuned here and shipped with edgec, one folder per preset under ``databases/``."""

from __future__ import annotations

import os

DATABASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "databases")


def shipped_database(preset: str) -> str | None:
    path = os.path.join(DATABASES, preset)
    return path if os.path.isfile(os.path.join(path, "edgec-tuning-db.json")) else None
