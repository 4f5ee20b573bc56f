"""Our Lava learning connection against Lava's own LearningDense, same rule, same inputs.

    python benchmarks/lava_learning_crosscheck.py [--steps 400] [--seed 0]

Both connections run the e-prop input rule of the grid network (``lava_sim_0_10`` profile,
on-chip write-back every step) as a Loihi 3-factor rule,

    dt = inc·u0·x1·y1 − leak·u0·t        dw = λ·u0·t·y3 − λ·u0·t·y2,

ours as :class:`LearningConnection` (fixed_pt model, learning at every step of one long trial),
Lava's as ``LearningDense`` with ``loihi3f_rules(...)["input"]`` (its bit-approximate fixed_pt
model). The same RingBuffers feed both: Poisson pre spikes, post spikes (bap), ψ (y1) and a
learning signal L split as y2 = L⁺, y3 = L⁻. At the end it compares the weights (on the synapses
of the network's input mask; Lava has no mask and learns every synapse), the tag and the pre
trace x1: identical entries, mean and max |difference|, correlation of the changes, their sums
and the sign agreement of changes that both made. It measures; it asserts nothing.

Why the two differ, though they evaluate the same rule with the same integer widths:
* rounding: Lava draws ONE random number per step for all synapses (``TraceRandom`` for the
  trace decay and impulse, ``ConnVarRandom`` for the tag and weight write-back, from NumPy's
  generator seeded by ``rng_seed``); ours draws from a counter-based hash of the step key. Each
  stochastic rounding is unbiased in both, but the draws differ, so single entries drift apart.
* order of dt and dw: in Lava 0.10 ``LearningConnectionModelBitApproximate._apply_learning_rules``
  (lava/magma/core/model/py/connection.py) builds the applier arguments once per epoch
  (``_extract_applier_args``: ``"tag_1": self.tag_1``) and then updates each synaptic variable
  from a copy, so dw reads the tag from BEFORE this epoch's dt update, whatever the order of
  the rules. Ours (processes/learning_connection/models.py) updates the tag first and computes
  dw from the new tag: a one-step lag of the tag in dw between the two.
* small traces of Lava's 3-factor y traces: ``Loihi3FLearningRule`` gives y1..y3 a time constant
  of 65535, so Lava decays the received y's once (y·e^(−1/65535), stochastically rounded) before
  the rule reads them; rarely one less than sent.
* the pre trace: both add the impulse in the step a spike arrives, after the decay. With our
  connection's ``delay = 1`` (the network's Dense delay) our x1 follows the spikes of the step
  before, so the run also reports that variant (``ours_delay1``); ``ours`` uses delay 0 and sees
  the same spikes as Lava.
The trial is one step longer than the run, so our connection never reaches its end-of-trial host
write-back (the firing-rate regulariser), which LearningDense does not have.
Lava's Dense truncates the weights' least significant bit at its first step (mixed sign, 8 weight
bits); this check gives LearningDense ``num_weight_bits = 9`` so that it starts from the same
(odd or even) integer weights as ours.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import lava_diffmod  # noqa: E402,F401  (the Python 3.11 import fix, before any lava import)
from benchmarks.common import RESULTS, machine  # noqa: E402
from lava_diffmod.lava import network as LN  # noqa: E402
from lava_diffmod.lava.rules import loihi3f_rules  # noqa: E402
from test_lava_network import grid_cfg  # noqa: E402


def inputs(gen: np.random.Generator, n_pre: int, n_post: int, steps: int) -> dict:
    """Pre spikes (Poisson, 5-10 %/step per neuron), bap (3 %/step), y1 ∈ [0, 127] and L ∈ [−127, 127]
    as slow random walks (steps of ±4 at most), L split into y2 = L⁺ and y3 = L⁻."""
    def walk(lo, hi, n):
        start = gen.integers(lo, hi + 1, (n, 1))
        return np.clip(start + np.cumsum(gen.integers(-4, 5, (n, steps)), axis=1), lo, hi)
    rate = gen.uniform(0.05, 0.10, (n_pre, 1))
    learning = walk(-127, 127, n_post)
    return {"pre": (gen.random((n_pre, steps)) < rate).astype(int),
            "bap": (gen.random((n_post, steps)) < 0.03).astype(int),
            "y1": walk(0, 127, n_post), "y2": np.maximum(learning, 0), "y3": np.maximum(-learning, 0)}


def compare(ours: np.ndarray, lava: np.ndarray, initial: np.ndarray) -> dict:
    ours, lava, initial = (np.asarray(a, dtype=np.int64).ravel() for a in (ours, lava, initial))
    d_ours, d_lava = ours - initial, lava - initial
    diff = np.abs(ours - lava)
    both = (d_ours != 0) & (d_lava != 0)
    corr = float(np.corrcoef(d_ours, d_lava)[0, 1]) if d_ours.std() > 0 and d_lava.std() > 0 else None
    return {"entries": int(ours.size), "identical": round(float((diff == 0).mean()), 4),
            "mean_abs_diff": round(float(diff.mean()), 4), "max_abs_diff": int(diff.max()),
            "corr_of_changes": None if corr is None else round(corr, 4),
            "sum_change_ours": int(d_ours.sum()), "sum_change_lava": int(d_lava.sum()),
            "mean_abs_change_ours": round(float(np.abs(d_ours).mean()), 4),
            "mean_abs_change_lava": round(float(np.abs(d_lava).mean()), 4),
            "both_changed": int(both.sum()),
            "sign_agreement": round(float((np.sign(d_ours[both]) == np.sign(d_lava[both])).mean()), 4)
            if both.any() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import LearningDense
    from lava.proc.io.source import RingBuffer
    from lava_diffmod.processes.learning_connection.process import LearningConnection
    import lava
    import torch

    # one trial one step longer than the run: learning at every step, no end-of-trial host write-back
    spec = LN.network_spec(grid_cfg(), args.seed, "fixed", args.steps + 1, learn=True)
    spec = dataclasses.replace(spec, obj=dataclasses.replace(spec.obj, window=spec.trial_steps))
    w0 = spec.fp.w_in[0].T.numpy().astype(np.int64)              # (post, pre)
    mask = spec.net.m_in[0].T.numpy() != 0
    n_post, n_pre = w0.shape
    rule = loihi3f_rules(spec.fp, spec.net)["input"]
    rule.rng_seed = args.seed                                     # Lava's own generators, seeded
    data = inputs(np.random.default_rng(args.seed), n_pre, n_post, args.steps)

    theirs = LearningDense(weights=w0.copy(), learning_rule=rule, num_message_bits=0, num_weight_bits=9)
    ours = LearningConnection(weights=w0.copy(), spec=spec, part="in", pre_offset=0, delay=0)
    ours1 = LearningConnection(weights=w0.copy(), spec=spec, part="in", pre_offset=0, delay=1)
    ports = {"pre": "s_in", "bap": "s_in_bap", "y1": "s_in_y1", "y2": "s_in_y2", "y3": "s_in_y3"}
    sources = {k: RingBuffer(data=v) for k, v in data.items()}
    for k, port in ports.items():
        for conn in (theirs, ours, ours1):
            sources[k].s_out.connect(getattr(conn, port))
    try:
        theirs.run(condition=RunSteps(num_steps=args.steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        end = {name: {"weights": c.weights.get(), "tag": c.tag_1.get() if c is theirs else c.tag.get(),
                      "x1": c.x1.get()} for name, c in (("lava", theirs), ("ours", ours), ("ours_delay1", ours1))}
    finally:
        theirs.stop()

    zeros = np.zeros((n_post, n_pre))
    results = {}
    for name in ("ours", "ours_delay1"):
        results[name] = {
            "weights (input-mask synapses)": compare(end[name]["weights"][mask], end["lava"]["weights"][mask], w0[mask]),
            "tag": compare(end[name]["tag"], end["lava"]["tag"], zeros),
            "x1": compare(end[name]["x1"], end["lava"]["x1"], np.zeros(n_pre))}
    off = ~mask
    results["lava_off_mask_weight_change_mean_abs"] = round(float(np.abs(end["lava"]["weights"][off] - w0[off]).mean()), 4)
    doc = {"benchmark": "lava_learning_crosscheck",
           "command": " ".join(["python", *sys.argv]),
           "machine": machine("cpu"),
           "versions": {"torch": torch.__version__, "numpy": np.__version__,
                        "lava": getattr(lava, "__version__", None) or _dist_version("lava-nc")},
           "date": "2026-11-22",
           "steps": args.steps, "seed": args.seed, "n_pre": n_pre, "n_post": n_post,
           "input_mask_synapses": int(mask.sum()),
           "rule": {"dw": rule.dw_str, "dt": rule.dt_str, "x1_impulse": rule.x1_impulse, "x1_tau": rule.x1_tau},
           "inputs": {"pre_spike_rate": round(float(data["pre"].mean()), 4), "bap_rate": round(float(data["bap"].mean()), 4),
                      "y1_mean": round(float(data["y1"].mean()), 2),
                      "L_mean_abs": round(float(np.abs(data["y2"] - data["y3"]).mean()), 2)},
           **results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lava_learning_crosscheck.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
