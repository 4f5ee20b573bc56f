"""The e-prop rule mapped for Loihi 2 as Lava ``Loihi3FLearningRule`` objects (LOIHI.md §4.2, §5.2).

The rule strings and trace parameters come from :func:`lava_diffmod.fixed.loihi_rule.learning_rules`;
this module only hands them to Lava, whose parser checks every product and literal.
"""
from __future__ import annotations

from ..fixed.loihi_rule import learning_rules
from ..fixed.quantize import FixedParams
from . import require_lava


def loihi3f_rules(fp: FixedParams, net, seed_index: int = 0) -> dict:
    """{"input", "recurrent", "readout"} → ``Loihi3FLearningRule`` of network ``seed_index``."""
    require_lava()
    from . import compat  # noqa: F401  (the Python 3.11 import fix, before any lava import)
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
    out = {}
    for title, r in learning_rules(fp, net, seed_index).items():
        kwargs = dict(dw=r["dw"], x1_impulse=r["x1_impulse"], x1_tau=r["x1_tau"], t_epoch=r["t_epoch"])
        if "dt" in r:
            kwargs["dt"] = r["dt"]
        out[title] = Loihi3FLearningRule(**kwargs)
    return out
