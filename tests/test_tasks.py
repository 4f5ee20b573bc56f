"""Task generators (MODEL.md §5, §8): shapes, timings, rates, labels, determinism, targets.

The expected input-rate maps are built here from the numbers in MODEL.md, independently of
the task code, and compared with what the tasks produce.
"""
from __future__ import annotations

import math

import pytest
import torch

from lava_diffmod.config import ConfigError, TaskConfig
from lava_diffmod.tasks import make_task
from lava_diffmod.tasks.base import trial_keys

F64 = torch.float64
CLASSIFICATION = ("cue_accumulation", "cue_accumulation_bellec", "dms")
ALL_TASKS = CLASSIFICATION + ("pattern_generation", "pattern_generation_bellec")
N_SIGMA = 5.0




# name → (T, window, n_in, n_out)
GEOMETRY = {
    "cue_accumulation": (2050, 150, 40, 2),
    "cue_accumulation_bellec": (2250, 150, 40, 2),
    "dms": (1100, 50, 80, 2),
    "pattern_generation": (2000, 2000, 100, 1),
    "pattern_generation_bellec": (1000, 1000, 100, 1),
}


def task_of(name: str, **params):
    return make_task(TaskConfig(name=name, params=params))


_BATCHES: dict = {}


def batch_of(name: str, seeds=(1,), split="train", counter=1, trials=range(64)):
    """Cached task batches (the full-size classification trials take a moment to draw)."""
    key = (name, tuple(seeds), split, counter, trials.start, trials.stop)
    if key not in _BATCHES:
        _BATCHES[key] = task_of(name).batch(list(seeds), split, counter, trials, "cpu", F64)
    return _BATCHES[key]


# ---------------------------------------------------------------------------------------------
# expected rate maps, straight from MODEL.md
# ---------------------------------------------------------------------------------------------

def _on(T: int, start: int, stop: int) -> torch.Tensor:
    t = torch.arange(T)
    return ((t >= start) & (t < stop)).to(F64)


def expected_cue_rates(sides: torch.Tensor, bellec: bool) -> torch.Tensor:
    """(B, T, 40) rates of cue accumulation for cue sides (B, 7), 1 = right."""
    B = sides.shape[0]
    T = 2250 if bellec else 2050
    cue_start = [150 * c for c in range(7)] if bellec else [50 + 150 * c for c in range(7)]
    left = torch.zeros(B, T, dtype=F64)
    right = torch.zeros(B, T, dtype=F64)
    for c, s in enumerate(cue_start):
        on = _on(T, s, s + 100)
        right += sides[:, c:c + 1].to(F64) * on
        left += (1 - sides[:, c:c + 1].to(F64)) * on
    pops = {
        "background": torch.full((B, T), 10.0, dtype=F64),
        "decision": 40.0 * _on(T, T - 150, T).expand(B, T),
        "left": 40.0 * left,
        "right": 40.0 * right,
    }
    order = ("left", "right", "decision", "background") if bellec else \
            ("background", "decision", "left", "right")
    return torch.cat([pops[p][..., None].expand(B, T, 10) for p in order], dim=-1)


def expected_dms_rates(cues: torch.Tensor) -> torch.Tensor:
    """(B, 1100, 80) rates of DMS for cues (B, 2)."""
    B, T = cues.shape[0], 1100
    pops = [
        torch.full((B, T), 10.0, dtype=F64),
        40.0 * _on(T, 1050, 1100).expand(B, T),
        40.0 * cues[:, 0:1].to(F64) * _on(T, 50, 200),
        40.0 * cues[:, 1:2].to(F64) * _on(T, 900, 1050),
    ]
    return torch.cat([p[..., None].expand(B, T, 20) for p in pops], dim=-1)


def populations(name: str) -> dict[str, slice]:
    order = {"cue_accumulation": ("background", "decision", "left", "right"),
             "cue_accumulation_bellec": ("left", "right", "decision", "background"),
             "dms": ("background", "decision", "cue1", "cue2")}[name]
    size = 20 if name == "dms" else 10
    return {p: slice(i * size, (i + 1) * size) for i, p in enumerate(order)}


def assert_binomial(k: float, n: float, p: float, what: str) -> None:
    sd = math.sqrt(n * p * (1 - p))
    assert abs(k - n * p) <= N_SIGMA * sd, f"{what}: {k} of {n}, expected {n * p:.1f} ± {N_SIGMA}·{sd:.1f}"


def assert_poisson_rates(x: torch.Tensor, rates: torch.Tensor, name: str) -> None:
    """x (T, S, B, n) spikes against rates (S, B, T, n) in Hz: zero where the rate is zero,
    and, per population and per distinct rate, the spike count within a binomial tolerance."""
    x = x.permute(1, 2, 0, 3)            # (S, B, T, n)
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    assert not x[rates == 0].any(), "spikes where the rate is zero"
    for pop, cols in populations(name).items():
        r, xs = rates[..., cols], x[..., cols]
        nonzero = torch.unique(r[r > 0]).tolist()
        assert nonzero, f"population {pop} never active"
        for value in nonzero:
            sel = r == value
            assert_binomial(float(xs[sel].sum()), float(sel.sum()), value / 1000.0, f"{name} {pop} @ {value} Hz")


# ---------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_TASKS)
def test_geometry(name):
    T, window, n_in, n_out = GEOMETRY[name]
    task = task_of(name)
    assert (task.steps, task.window, task.n_in, task.n_out) == (T, window, n_in, n_out)
    assert task.kind == ("classification" if name in CLASSIFICATION else "regression")
    assert task.frozen == (name not in CLASSIFICATION)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_batch_shapes(name):
    T, _, n_in, n_out = GEOMETRY[name]
    task = task_of(name)
    B = 1 if name == "pattern_generation_bellec" else 3
    b = task.batch([1, 2], "train", 1, range(B), "cpu", torch.float32)
    assert b.x.shape == (T, 2, B, n_in)
    assert b.x.dtype == torch.float32
    assert b.keys.shape == (2, B)
    if name in CLASSIFICATION:
        assert b.target.shape == (2, B) and b.target.dtype == torch.long
        assert set(b.target.unique().tolist()) <= {0, 1}
    else:
        assert b.target.shape == (T, 2, 1, n_out)
        assert b.target.dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# timings and rates
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cue_accumulation", "cue_accumulation_bellec"])
def test_cue_accumulation_timing_and_rates(name):
    task = task_of(name)
    b = batch_of(name)
    sides, labels, rates = task.trials(b.keys, F64)
    assert sides.shape == (1, 64, 7)
    assert torch.equal(labels, b.target)
    expected = expected_cue_rates(sides[0], bellec=name.endswith("bellec"))
    assert torch.equal(rates[0].to(F64), expected)
    assert_poisson_rates(b.x, rates, name)
    # both sides occur, and the decision population fires only in the last 150 ms
    assert 0 < int(sides.sum()) < sides.numel()
    dec = b.x[..., populations(name)["decision"]]
    assert not dec[:-150].any() and dec[-150:].any()


def test_cue_accumulation_cue_intervals_explicitly():
    """Cue c occupies [50 + 150c, 150 + 150c): left/right fire only during their own cues."""
    name = "cue_accumulation"
    task = task_of(name)
    b = batch_of(name)
    sides, _, _ = task.trials(b.keys, F64)
    pops = populations(name)
    x = b.x[:, 0]                                     # (T, B, 40)
    left, right = x[..., pops["left"]].sum(-1), x[..., pops["right"]].sum(-1)   # (T, B)
    cue_steps = torch.zeros(2050, dtype=torch.bool)
    for c in range(7):
        cue_steps[50 + 150 * c:150 + 150 * c] = True
        seg = slice(50 + 150 * c, 150 + 150 * c)
        is_right = sides[0, :, c].bool()
        assert not left[seg][:, is_right].any() and not right[seg][:, ~is_right].any()
        # over 64 trials the active side fired in every cue
        assert left[seg][:, ~is_right].sum() > 0 or is_right.all()
        assert right[seg][:, is_right].sum() > 0 or (~is_right).all()
    assert not left[~cue_steps].any() and not right[~cue_steps].any()
    assert cue_steps[:50].sum() == 0 and cue_steps[1050:].sum() == 0


def test_dms_timing_and_rates():
    task = task_of("dms")
    b = batch_of("dms")
    cues, labels, rates = task.trials(b.keys, F64)
    assert cues.shape == (1, 64, 2)
    assert torch.equal(labels, b.target)
    assert torch.equal(rates[0].to(F64), expected_dms_rates(cues[0]))
    assert_poisson_rates(b.x, rates, "dms")
    pops = populations("dms")
    x = b.x[:, 0]
    c1 = x[..., pops["cue1"]].sum(-1)                 # (T, B)
    c2 = x[..., pops["cue2"]].sum(-1)
    assert not c1[:50].any() and not c1[200:].any()
    assert not c1[50:200][:, cues[0, :, 0] == 0].any()
    assert not c2[:900].any() and not c2[1050:].any()
    assert not c2[900:1050][:, cues[0, :, 1] == 0].any()
    assert c1[50:200][:, cues[0, :, 0] == 1].sum(0).gt(0).float().mean() > 0.9
    # every combination of cues shows up in 64 trials
    combos = {tuple(c) for c in cues[0].tolist()}
    assert combos == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize("name", ["pattern_generation", "pattern_generation_bellec"])
def test_pattern_generation_rates(name):
    task = task_of(name)
    b = task.batch([1], "train", 1, range(task.n_frozen), "cpu", F64)
    T = GEOMETRY[name][0]
    x = b.x[:, 0]                                     # (T, B, 100)
    first = 1 if name.endswith("bellec") else 0
    if first:
        assert not x[0].any(), "Bellec: no input spike at step 0"
    n = x[first:].numel()
    assert_binomial(float(x[first:].sum()), n, 0.05, f"{name} 50 Hz")
    # every input neuron is active over the trial (the rate is not confined to a few channels)
    assert (x.sum((0, 1)) > 0).all()
    assert x.shape[0] == T


# ---------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------

def _many_trials(name: str, n: int = 2000, chunk: int = 250, **params):
    task = task_of(name, **params)
    out = [task.trials(trial_keys([3], "cue_accumulation" if name.startswith("cue") else name,
                                  "train", 1, range(s, s + chunk), "cpu"), F64)[:2]
           for s in range(0, n, chunk)]
    return torch.cat([o[0][0] for o in out]), torch.cat([o[1][0] for o in out])


@pytest.fixture(scope="module")
def cue_trials():
    return _many_trials("cue_accumulation")


@pytest.fixture(scope="module")
def bellec_trials():
    return _many_trials("cue_accumulation_bellec")


def _hist_check(counts: torch.Tensor, probs: list[float], n: int, what: str):
    for k, p in enumerate(probs):
        assert_binomial(float((counts == k).sum()), n, p, f"{what}: #right = {k}")


def test_cue_labels_consistent_and_balanced(cue_trials):
    sides, labels = cue_trials
    n = sides.shape[0]
    assert torch.equal(labels, (sides.sum(-1) >= 4).long()), "label 1 iff right cues are the majority"
    assert_binomial(float(labels.sum()), n, 0.5, "cue accumulation: label balance")
    # sides are independent fair coins: P(#right = k) = C(7, k) / 2^7, and each cue position fair
    _hist_check(sides.sum(-1), [math.comb(7, k) / 128 for k in range(8)], n, "paper cues")
    for c in range(7):
        assert_binomial(float(sides[:, c].sum()), n, 0.5, f"cue {c} right")


def test_bellec_favoured_side_frequency(bellec_trials):
    sides, labels = bellec_trials
    n = sides.shape[0]
    assert torch.equal(labels, (sides.sum(-1) >= 4).long())
    assert_binomial(float(labels.sum()), n, 0.5, "Bellec: label balance")
    # a favoured side chosen fairly, then each cue goes to it with p = 0.7: #right follows the
    # equal mixture of Binomial(7, 0.7) and Binomial(7, 0.3)
    mix = [0.5 * math.comb(7, k) * (0.7 ** k * 0.3 ** (7 - k) + 0.3 ** k * 0.7 ** (7 - k))
           for k in range(8)]
    _hist_check(sides.sum(-1), mix, n, "Bellec cues")
    # cues cluster on one side: the fraction on the trial's majority side has mean
    # E[max(K, 7 - K)] / 7 = 0.741 (0.654 for independent fair cues)
    k = sides.sum(-1).to(F64)
    frac = torch.maximum(k, 7 - k) / 7
    mean_frac = sum(p * max(j, 7 - j) / 7 for j, p in enumerate(mix))
    sd = float(frac.std()) / math.sqrt(n)
    assert abs(float(frac.mean()) - mean_frac) < N_SIGMA * sd


def test_bellec_p_favoured_one_puts_every_cue_on_one_side():
    sides, labels = _many_trials("cue_accumulation_bellec", n=500, p_favoured=1.0,
                                 cue_ms=5, gap_ms=5, delay_ms=5, decision_ms=5)
    k = sides.sum(-1)
    assert bool(((k == 0) | (k == 7)).all())
    assert_binomial(float((k == 7).sum()), 500, 0.5, "favoured side = right")


def test_dms_labels_consistent_and_balanced():
    task = task_of("dms")
    out = [task.trials(trial_keys([3], "dms", "train", 1, range(s, s + 500), "cpu"), F64)[:2]
           for s in range(0, 2000, 500)]
    cues = torch.cat([o[0][0] for o in out])
    labels = torch.cat([o[1][0] for o in out])
    n = cues.shape[0]
    assert torch.equal(labels, (cues[:, 0] == cues[:, 1]).long()), "label 1 iff match"
    assert_binomial(float(labels.sum()), n, 0.5, "DMS: label balance")
    assert_binomial(float(cues[:, 0].sum()), n, 0.5, "DMS c1")
    assert_binomial(float(cues[:, 1].sum()), n, 0.5, "DMS c2")
    assert_binomial(float((cues[:, 0] * cues[:, 1]).sum()), n, 0.25, "DMS c1 = c2 = 1 (independence)")


# ---------------------------------------------------------------------------------------------
# determinism and addressability
# ---------------------------------------------------------------------------------------------

def _b(name, seeds, split, counter, trials):
    task = task_of(name)
    if name == "pattern_generation_bellec":
        trials = range(min(trials.start, 0), min(trials.stop, 1))
    return task.batch(list(seeds), split, counter, trials, "cpu", torch.float32)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_same_address_same_bits(name):
    a = _b(name, [1, 2], "train", 5, range(0, 4))
    b = _b(name, [1, 2], "train", 5, range(0, 4))
    assert torch.equal(a.x, b.x) and torch.equal(a.target, b.target) and torch.equal(a.keys, b.keys)
    assert not torch.equal(a.x[:, 0], a.x[:, 1]), "two seeds give the same data"


@pytest.mark.parametrize("name", [n for n in ALL_TASKS if n != "pattern_generation_bellec"])
def test_micro_batching_does_not_change_data(name):
    whole = _b(name, [1], "train", 3, range(0, 8))
    parts = [_b(name, [1], "train", 3, r) for r in (range(0, 4), range(4, 8))]
    assert torch.equal(whole.x, torch.cat([p.x for p in parts], dim=2))
    assert torch.equal(whole.keys, torch.cat([p.keys for p in parts], dim=1))
    if name in CLASSIFICATION:
        assert torch.equal(whole.target, torch.cat([p.target for p in parts], dim=1))
    else:
        for p in parts:
            assert torch.equal(whole.target, p.target)
    # trials within a batch differ from each other
    assert not torch.equal(whole.x[:, :, 0], whole.x[:, :, 1])


@pytest.mark.parametrize("name", ALL_TASKS)
def test_seed_data_independent_of_other_seeds(name):
    both = _b(name, [1, 2], "eval", 0, range(0, 4))
    alone = _b(name, [2], "eval", 0, range(0, 4))
    assert torch.equal(both.x[:, 1], alone.x[:, 0])
    assert torch.equal(both.keys[1], alone.keys[0])
    if name in CLASSIFICATION:
        assert torch.equal(both.target[1], alone.target[0])
    else:
        assert torch.equal(both.target[:, 1], alone.target[:, 0])
        assert not torch.equal(both.target[:, 0], both.target[:, 1]), "seeds share a target"


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_fresh_training_data_and_separate_eval_set(name):
    n1 = _b(name, [1], "train", 1, range(0, 4))
    n2 = _b(name, [1], "train", 2, range(0, 4))
    ev = _b(name, [1], "eval", 0, range(0, 4))
    tr0 = _b(name, [1], "train", 0, range(0, 4))
    assert not torch.equal(n1.x, n2.x), "iterations n and n+1 share their data"
    assert not torch.equal(ev.x, n1.x), "the evaluation set equals a training batch"
    assert not torch.equal(ev.x, tr0.x), "split 'eval' and 'train' share a stream"
    assert not torch.equal(n1.keys, n2.keys) and not torch.equal(ev.keys, tr0.keys)


# ---------------------------------------------------------------------------------------------
# pattern generation targets and frozen data
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pattern_generation", "pattern_generation_bellec"])
def test_pattern_generation_frozen(name):
    task = task_of(name)
    n = task.n_frozen
    assert n == (1 if name.endswith("bellec") else 8)
    it1 = task.batch([1], "train", 1, range(n), "cpu", F64)
    it2 = task.batch([1], "train", 2, range(n), "cpu", F64)
    ev = task.batch([1], "eval", 0, range(n), "cpu", F64)
    assert torch.equal(it1.x, it2.x) and torch.equal(it1.x, ev.x)
    assert torch.equal(it1.target, it2.target) and torch.equal(it1.target, ev.target)
    with pytest.raises(ValueError, match="n_frozen"):
        task.batch([1], "train", 1, range(n + 1), "cpu", F64)


def _lstsq(basis: torch.Tensor, y: torch.Tensor):
    coef = torch.linalg.lstsq(basis, y[:, None]).solution[:, 0]
    return coef, float((basis @ coef - y).abs().max())


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_pattern_generation_paper_target(seed):
    task = task_of("pattern_generation")
    b = task.batch([seed], "train", 1, range(8), "cpu", F64)
    y = b.target
    assert y.shape == (2000, 1, 1, 1)            # one target, broadcast over the 8 trials
    y = y[:, 0, 0, 0]
    t = torch.arange(2000, dtype=F64)
    freqs = [0.5, 1.0, 2.0, 3.0, 4.0]
    sines = torch.stack([torch.sin(2 * math.pi * f * t / 1000) for f in freqs], dim=1)
    assert abs(float(y.mean())) < 1e-12, "target not mean-centred"
    coef, resid = _lstsq(torch.cat([sines, torch.ones(2000, 1, dtype=F64)], dim=1), y)
    w, const = coef[:5], float(coef[5])
    assert resid < 1e-10, "target is not a sum of the five sines plus a constant"
    assert bool((w >= -1e-12).all()), f"negative weights {w}"
    assert abs(float(w.sum()) - 1.0) < 1e-10, f"weights sum to {float(w.sum())}"
    assert abs(const + float((sines @ w).mean())) < 1e-10, "offset is not minus the temporal mean"
    assert float(w.std()) > 1e-3, "weights are not random"
    # float32 data carries the same target
    b32 = task.batch([seed], "eval", 0, range(2), "cpu", torch.float32)
    assert torch.allclose(b32.target[:, 0, 0, 0].to(F64), y, atol=1e-6)


def test_pattern_generation_target_is_mean_centred_on_partial_periods():
    """Over 2000 ms every sine has whole periods (mean 0 anyway); over 1300 ms the raw sum has
    a clear nonzero mean, which the target must subtract."""
    task = task_of("pattern_generation", duration_ms=1300)
    y = task.batch([1], "train", 1, range(2), "cpu", F64).target[:, 0, 0, 0]
    t = torch.arange(1300, dtype=F64)
    sines = torch.stack([torch.sin(2 * math.pi * f * t / 1000) for f in (0.5, 1.0, 2.0, 3.0, 4.0)], 1)
    coef, resid = _lstsq(torch.cat([sines, torch.ones(1300, 1, dtype=F64)], dim=1), y)
    assert resid < 1e-10
    raw_mean = float((sines @ coef[:5]).mean())
    assert raw_mean > 0.05, "test set-up: the uncentred pattern should have a clear mean"
    assert abs(float(y.mean())) < 1e-12
    assert abs(float(coef[5]) + raw_mean) < 1e-10


@pytest.mark.parametrize("seed", [1, 4])
def test_pattern_generation_bellec_target(seed):
    task = task_of("pattern_generation_bellec")
    b = task.batch([seed], "train", 1, range(1), "cpu", F64)
    assert b.target.shape == (1000, 1, 1, 1)
    y = b.target[:, 0, 0, 0]
    assert float(y[0]) == 0.0
    assert abs(float(y.abs().max()) - 1.0) < 1e-12
    t = torch.arange(1000, dtype=F64)
    periods = [1000, 500, 333, 200]
    cols = [torch.ones(1000, dtype=F64)]
    for p in periods:
        cols += [torch.sin(2 * math.pi * t / p), torch.cos(2 * math.pi * t / p)]
    coef, resid = _lstsq(torch.stack(cols, dim=1), y)
    assert resid < 1e-9, "target is not a sum of the four sines (periods 1000/500/333/200 ms)"
    amps = torch.stack([coef[1::2], coef[2::2]], dim=1).norm(dim=1)
    # amplitudes U(0.5, 2) before a common rescaling: every ratio within [1/4, 4]
    assert float(amps.max() / amps.min()) <= 4.0 + 1e-9
    assert bool((amps > 1e-3).all())


# ---------------------------------------------------------------------------------------------
# bad parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, field", [
    ("cue_accumulation", {"n_cues": 6}, "task.params.n_cues"),
    ("cue_accumulation", {"n_cuez": 7}, "task.params.n_cuez"),
    ("cue_accumulation", {"delay_ms": -5}, "task.params.delay_ms"),
    ("cue_accumulation", {"cue_ms": 20.5}, "task.params.cue_ms"),
    ("cue_accumulation", {"cue_ms": "100"}, "task.params.cue_ms"),
    ("cue_accumulation", {"gap_first": 1}, "task.params.gap_first"),
    ("cue_accumulation", {"channel_order": ["left", "right", "decision", "noise"]},
     "task.params.channel_order"),
    ("cue_accumulation_bellec", {"p_favoured": 1.2}, "task.params.p_favoured"),
    ("dms", {"rate_hz": -1.0}, "task.params.rate_hz"),
    ("dms", {"n_cues": 3}, "task.params.n_cues"),
    ("pattern_generation", {"style": "fancy"}, "task.params.style"),
    ("pattern_generation", {"freqs_hz": 3.0}, "task.params.freqs_hz"),
])
def test_bad_task_params(name, params, field):
    with pytest.raises(ConfigError) as info:
        task_of(name, **params)
    msg = str(info.value)
    assert field in msg, msg
    assert "\n" not in msg


def test_good_task_params_take_effect():
    task = task_of("cue_accumulation", n_cues=3, cue_ms=20, gap_ms=10, delay_ms=20, decision_ms=20)
    assert (task.steps, task.window) == (3 * 30 + 40, 20)
    sides, _, rates = task.trials(trial_keys([1], "cue_accumulation", "train", 1, range(4), "cpu"), F64)
    assert sides.shape == (1, 4, 3)
    # cue c at [10 + 30c, 30 + 30c): the cue populations are silent elsewhere
    cue_cols = slice(20, 40)
    active = rates[0, :, :, cue_cols].sum((0, 2)) > 0
    expect = torch.zeros(130, dtype=torch.bool)
    for c in range(3):
        expect[10 + 30 * c:30 + 30 * c] = True
    assert torch.equal(active, expect)
