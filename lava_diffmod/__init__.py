"""lava-diffmod: e-prop with a diffusing learning signal, in float, fixed point and Lava."""

__version__ = "0.1.0"

from .lava import compat as _compat

_compat.install()
