"""Lava bridge: the only subpackage that imports lava, and only lazily.

Importing this package never imports lava. :func:`lava_available` tells whether the Lava
backend can run here; :func:`require_lava` is the single error backend entry points raise.
"""

from __future__ import annotations

import importlib.metadata
import sys

INSTALL_HINT = "run `make venv` (Python 3.10 or 3.11) and use its environment"


class LavaUnavailableError(ImportError):
    """The Lava backend cannot run in this environment."""


def _major(distribution: str) -> int | None:
    """Major version of an installed distribution, None if it is not installed."""
    try:
        return int(importlib.metadata.version(distribution).split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return None


def lava_available() -> tuple[bool, str]:
    """Return (True, "") if lava-nc can run here, else (False, reason); never imports lava."""
    if sys.version_info >= (3, 12):
        version = ".".join(map(str, sys.version_info[:3]))
        return False, f"lava-nc 0.10 does not run on Python >= 3.12 (this is {version})"
    if _major("lava-nc") is None:
        return False, "lava-nc is not installed"
    numpy_major = _major("numpy")
    if numpy_major is None:
        return False, "numpy is not installed"
    if numpy_major >= 2:
        return False, "lava-nc 0.10 needs numpy < 2"
    return True, ""


def require_lava() -> None:
    """Raise :class:`LavaUnavailableError`, naming the install path, if lava cannot run."""
    ok, reason = lava_available()
    if not ok:
        raise LavaUnavailableError(f"the Lava backend is unavailable: {reason}; {INSTALL_HINT}")
