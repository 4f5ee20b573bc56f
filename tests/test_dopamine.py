"""The Dopamine optimizer (RULES.md Part B, C.4): the WP update estimates the gradient, the
clean weights are restored exactly, the η/s laws, the spectral reset, normalisation, batched
seeds, the forecasting data (RK4, windows), errors, the spiking network and the fixed-point
emulator, and a pinned seeded run."""
import dataclasses
import math
import re

import pytest
import torch

from lava_diffmod import config as C
from lava_diffmod import rng
from lava_diffmod.rules import bptt
from lava_diffmod.float.mlp import bce_loss, mlp_init, mlp_logits, rnn_init, rnn_predict
from lava_diffmod.rules.dopamine import (DopamineConfig, dopamine, emulator_loss, learning_rate,
                                         network_loss, network_masks, perturbation, rpe_trace,
                                         seed_keys, spectral_radius, spectral_rescale)
from lava_diffmod.tasks.forecast import (forecast_data, lorenz, rk4_step, rossler, trajectory,
                                         windows)
from lava_diffmod.tasks.xor import xor_data
from lava_diffmod.training import trainer
from lava_diffmod.training.dopamine_train import method_config, train_forecast, train_xor

from helpers import TINY

F64 = torch.float64


def quadratic(a: torch.Tensor, c: torch.Tensor):
    """L(w) = ½ (w − c)ᵀ A (w − c) per seed, w a 1-tuple of (S, P); ∇L = A (w − c)."""
    def loss(params):
        d = params[0] - c
        return 0.5 * torch.einsum("sp,spq,sq->s", d, a, d)
    return loss


def spd(s, p, seed):
    """A (S, P, P) symmetric positive definite, c (S, P), drawn from rng.py."""
    m = rng.normal(rng.name_key(seed, "test_spd", "m"), (s, p, p))
    return m @ m.transpose(1, 2) / p + torch.eye(p, dtype=F64), rng.normal(rng.name_key(seed, "test_spd", "c"), (s, p))


def one_update(cfg, params, loss, seeds=(0,), **kw):
    opt = dopamine(cfg, list(seeds), **kw)
    return opt.step(loss, params, opt.init(params))


# ---------------------------------------------------------------------------------------------
# the update direction estimates the gradient

@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_update_direction_estimates_the_gradient(noise):
    """E[δ ξ/σ²] = ∇L for a quadratic (exactly: the cubic moments of ξ vanish). With K trials,
    the estimate's coordinate i has sd √((|g|² ± g_i²)/K) (+ Gaussian, − Rademacher); within 5 sd."""
    s, p, k = 2, 6, 3000
    a, c = spd(s, p, 1)
    w = (torch.zeros(s, p, dtype=F64),)
    g = torch.einsum("spq,sq->sp", a, w[0] - c)
    cfg = DopamineConfig(sigma=1e-3, noise=noise, trials=k, eta_law="fixed", eta0=1.0)
    new, _, _ = one_update(cfg, w, quadratic(a, c), seeds=(3, 4))
    est = w[0] - new[0]
    sign = 1 if noise == "gaussian" else -1
    sd = ((g ** 2).sum(-1, keepdim=True) + sign * g ** 2).clamp(min=0).sqrt() / math.sqrt(k)
    assert bool(((est - g).abs() <= 5 * sd + 1e-9).all()), (est, g)
    cos = torch.nn.functional.cosine_similarity(est, g, dim=-1)
    assert bool((cos > 0.95).all())


def test_weights_are_restored_exactly_after_the_perturbed_pass():
    """The clean pass sees the original tensors bit for bit, the inputs are never written, and
    a loss that ignores the weights (δ = 0) returns exactly the original weights."""
    params = mlp_init([0, 1], hidden=3)
    before = tuple(w.clone() for w in params)
    seen = []

    def loss(p):
        seen.append(tuple(w.clone() for w in p))
        return torch.zeros(2, dtype=F64)
    new, state, info = one_update(DopamineConfig(sigma=0.3, trials=2), params, loss, seeds=(0, 1))
    assert all(torch.equal(a, b) for a, b in zip(params, before))
    assert all(torch.equal(a, b) for a, b in zip(seen[0], before))          # the clean pass L⁰
    assert all(not torch.equal(a, b) for a, b in zip(seen[1], before))      # a perturbed pass
    assert all(torch.equal(a, b) for a, b in zip(new, before))
    assert torch.equal(info.delta, torch.zeros(2, dtype=F64))


def test_perturbation_is_regenerable_and_has_the_asked_scale():
    params = (torch.zeros(3, 100, 40, dtype=F64),)
    sigma = (torch.tensor([0.1, 1.0, 2.0], dtype=F64),)
    key = torch.tensor([5, 6, 7])
    xi = perturbation(key, 4, 0, params, sigma, "gaussian")[0]
    assert torch.equal(xi, perturbation(key, 4, 0, params, sigma, "gaussian")[0])
    assert not torch.equal(xi, perturbation(key, 5, 0, params, sigma, "gaussian")[0])
    torch.testing.assert_close(xi.flatten(1).std(1), sigma[0], rtol=0.02, atol=0)
    r = perturbation(key, 4, 0, params, sigma, "rademacher")[0]
    assert torch.equal(r.abs(), sigma[0][:, None, None].expand_as(r))


# ---------------------------------------------------------------------------------------------
# the η and s laws

def test_rpe_and_learning_rate_laws_on_hand_values():
    s = rpe_trace(torch.tensor([0.2], dtype=F64), torch.tensor([0.6], dtype=F64), 0.5)
    assert float(s) == pytest.approx(0.4)
    eta0, cfg = torch.tensor([0.04], dtype=F64), DopamineConfig(beta_eta=0.25, eta_max=1.0)
    assert float(learning_rate(eta0, s, cfg)) == pytest.approx(0.75 * 0.04 + 0.25 * 0.4)        # 0.13
    assert float(learning_rate(eta0, s, dataclasses.replace(cfg, eta_max=0.05))) == pytest.approx(0.05)
    assert float(learning_rate(eta0, s, dataclasses.replace(cfg, eta_law="slow_ema"))) == pytest.approx(
        0.25 * 0.04 + 0.75 * 0.4)                                                                 # 0.31
    assert float(learning_rate(eta0, s, dataclasses.replace(cfg, eta_law="fixed"))) == 0.04
    tiny = learning_rate(torch.tensor([1e-12], dtype=F64), torch.tensor([0.0], dtype=F64), DopamineConfig())
    assert float(tiny) == 1e-8                                                                    # η_min


def test_one_step_applies_the_laws_and_the_update():
    """L(w) = Σw, so δ = Σξ; s, η and w − η δ ξ/σ² by hand."""
    cfg = DopamineConfig(sigma=0.1, eta0=0.02, s0=0.05, beta_s=0.9, beta_eta=0.5, eta_max=1.0)
    w = (torch.ones(1, 4, dtype=F64),)
    opt = dopamine(cfg, [7])
    state = opt.init(w)
    new, state1, info = opt.step(lambda p: p[0].sum(-1), w, state)
    xi = perturbation(seed_keys([7], "perturb"), 0, 0, w, state.sigma, "gaussian")[0]
    delta = float(xi.sum())
    s = 0.9 * 0.05 + 0.1 * abs(delta)
    eta = 0.5 * 0.02 + 0.5 * s
    assert float(info.delta) == pytest.approx(delta, rel=1e-12)
    assert float(state1.s) == pytest.approx(s, rel=1e-12) and float(state1.eta) == pytest.approx(eta, rel=1e-12)
    torch.testing.assert_close(new[0], w[0] - eta * delta * xi / 0.01, rtol=1e-12, atol=1e-15)
    assert state1.step == 1


def test_normalise_none_is_sigma2_times_sigma_squared():
    a, c = spd(1, 5, 2)
    w = (torch.zeros(1, 5, dtype=F64),)
    base = DopamineConfig(sigma=0.05, eta_law="fixed", eta0=0.3)
    up2 = w[0] - one_update(base, w, quadratic(a, c))[0][0]
    up0 = w[0] - one_update(dataclasses.replace(base, normalise="none"), w, quadratic(a, c))[0][0]
    torch.testing.assert_close(up0, up2 * 0.05 ** 2, rtol=1e-12, atol=0)


def test_relative_sigma_scales_with_the_weight_rms():
    w = (torch.full((2, 10), 3.0, dtype=F64), torch.full((2, 4), -0.5, dtype=F64))
    st = dopamine(DopamineConfig(sigma=0.1, sigma_relative=True), [0, 1]).init(w)
    torch.testing.assert_close(st.sigma[0], torch.full((2,), 0.3, dtype=F64))
    torch.testing.assert_close(st.sigma[1], torch.full((2,), 0.05, dtype=F64))


# ---------------------------------------------------------------------------------------------
# Dopamine-2: the spectral reset

def test_spectral_rescale_sets_rho_and_keeps_signs():
    w = rnn_init([0, 1, 2], hidden=20).w_hh * torch.tensor([0.3, 1.0, 4.0], dtype=F64)[:, None, None]
    w[0, :, 3] = 0.0
    out = spectral_rescale(w, 0.9)
    torch.testing.assert_close(spectral_radius(out), torch.full((3,), 0.9, dtype=F64), rtol=1e-10, atol=0)
    assert torch.equal(torch.sign(out), torch.sign(w))
    assert torch.equal(spectral_rescale(torch.zeros(1, 3, 3)), torch.zeros(1, 3, 3))


def test_reset_every_k_steps_in_the_optimizer():
    data = forecast_data("lorenz", steps=200, lookback=8)
    params = rnn_init([0], hidden=6)
    params = params._replace(w_hh=params.w_hh * 1.7)

    def loss(p):
        return ((rnn_predict(p, data.x_train) - data.y_train) ** 2).mean((-2, -1))
    opt = dopamine(DopamineConfig(sigma=1e-3, reset_every=2, reset_leaf="w_hh", rho_target=0.8), [0])
    state = opt.init(params)
    p1, state, _ = opt.step(loss, params, state)
    assert abs(float(spectral_radius(p1.w_hh)) - 0.8) > 0.1        # step 1: no reset
    p2, state, _ = opt.step(loss, p1, state)
    assert float(spectral_radius(p2.w_hh)) == pytest.approx(0.8, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# batched seeds

def test_seed_batched_equals_one_seed_at_a_time():
    seeds = [3, 8, 11]
    x, y = xor_data()

    def loss(p):
        return bce_loss(mlp_logits(p, x), y)

    def run(ss):
        opt = dopamine(DopamineConfig(sigma=1e-2, eta_law="slow_ema", eta0=0.05), ss)
        p = mlp_init(ss, hidden=3)
        st = opt.init(p)
        for _ in range(5):
            p, st, _ = opt.step(loss, p, st)
        return p, st
    batched, st = run(seeds)
    for i, s in enumerate(seeds):
        alone, st1 = run([s])
        for a, b in zip(batched, alone):
            torch.testing.assert_close(a[i:i + 1], b, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(st.eta[i:i + 1], st1.eta, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# the forecasting data

def test_rk4_on_a_linear_ode_is_fourth_order():
    """du/dt = λu: one step's error against e^{λ dt} is O(dt⁵): halving dt divides it by ≈ 32."""
    lam = torch.tensor([-1.3, 0.7, 2.0], dtype=F64)
    u = torch.ones(3, dtype=F64)
    errs = [(rk4_step(lambda v: lam * v, u, dt) - torch.exp(lam * dt)).abs() for dt in (0.1, 0.05)]
    ratio = errs[0] / errs[1]
    assert bool(((ratio > 28) & (ratio < 36)).all()), ratio


def test_lorenz_first_step_by_hand_and_bounded_attractor():
    dt, u = 0.01, (1.0, 0.0, 0.0)

    def f(x, y, z):
        return (10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z)
    k1 = f(*u)
    k2 = f(*(a + dt / 2 * b for a, b in zip(u, k1)))
    k3 = f(*(a + dt / 2 * b for a, b in zip(u, k2)))
    k4 = f(*(a + dt * b for a, b in zip(u, k3)))
    hand = [a + dt / 6 * (p + 2 * q + 2 * r + s) for a, p, q, r, s in zip(u, k1, k2, k3, k4)]
    tr = trajectory("lorenz", steps=3000)
    torch.testing.assert_close(tr[1], torch.tensor(hand, dtype=F64), rtol=1e-14, atol=1e-15)
    assert torch.equal(tr[0], torch.tensor(u, dtype=F64))
    assert float(tr[:, :2].abs().max()) < 30 and 0 <= float(tr[:, 2].min()) and float(tr[:, 2].max()) < 55
    ros = trajectory("rossler", steps=3000)
    assert float(ros[:, :2].abs().max()) < 15 and float(ros[:, 2].min()) > -1e-3
    torch.testing.assert_close(rossler(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([-5.0, 1.4, 0.2 + 3 * (1 - 5.7)]))
    torch.testing.assert_close(lorenz(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([10.0, 23.0, 2 - 8.0]))
    burned = trajectory("lorenz", steps=5, burn_in=10)
    torch.testing.assert_close(burned[0], trajectory("lorenz", steps=11)[10], rtol=0, atol=0)


def test_windows_split_and_zscore():
    d = forecast_data("lorenz")
    assert d.x_train.shape == (3968, 32, 3) and d.y_train.shape == (3968, 3)
    assert d.x_val.shape == (968, 32, 3) and d.y_val.shape == (968, 3)
    z = (trajectory("lorenz") - d.mean) / d.std
    torch.testing.assert_close(z[:4000].mean(0), torch.zeros(3, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(d.x_train[5], z[5:37])
    torch.testing.assert_close(d.y_train[5], z[37])
    torch.testing.assert_close(d.x_val[0], z[4000:4032])
    x, y = windows(torch.arange(10.0)[:, None], 3)
    assert x.shape == (7, 3, 1) and torch.equal(y[:, 0], torch.arange(3.0, 10.0))


# ---------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("field, value, words", [
    ("sigma", 0.0, "> 0"), ("beta_s", 1.0, "in [0, 1)"), ("beta_eta", -0.1, "in [0, 1)"),
    ("trials", 0, ">= 1"), ("normalise", "l2", "sigma2, none"), ("eta_law", "signed", "as_written"),
    ("noise", "uniform", "gaussian, rademacher"), ("eta_max", 1e-9, ">= eta_min"), ("reset_every", -1, ">= 0")])
def test_bad_parameters_name_the_field_and_range(field, value, words):
    with pytest.raises(ValueError, match=rf"dopamine\.{field} = .*must be .*{re.escape(words)}"):
        DopamineConfig(**{field: value})


def test_other_errors_are_clear():
    with pytest.raises(ValueError, match="dopamine.noise.*integer weights need rademacher"):
        dopamine(DopamineConfig(sigma=1), [0], weight_range=(-8, 7))
    with pytest.raises(ValueError, match="dopamine.sigma.*whole number"):
        dopamine(DopamineConfig(sigma=1.5, noise="rademacher"), [0], weight_range=(-8, 7))
    with pytest.raises(ValueError, match="dopamine.reset_leaf = 'w_rec': not a field.*w_hh"):
        dopamine(DopamineConfig(reset_every=1), [0]).init(rnn_init([0], 4))
    with pytest.raises(ValueError, match="2 seeds on axis 0, seeds list has 1"):
        dopamine(DopamineConfig(), [0]).init(mlp_init([0, 1]))
    with pytest.raises(ValueError, match="forecast.system = 'henon'"):
        trajectory("henon")
    with pytest.raises(ValueError, match=r"forecast.lookback = 0: must be in \[1, 9\]"):
        windows(torch.zeros(10, 3), 0)
    with pytest.raises(ValueError, match="method = 'sgd'"):
        train_xor("sgd", [0], 2, 10)


# ---------------------------------------------------------------------------------------------
# the spiking network (float) and the fixed-point emulator

def tiny_setup(**over):
    data = {k: dict(v) for k, v in TINY.items()}
    data["rule"] = {"name": "eprop"}
    data["train"] = dict(data["train"], seeds=[1, 2], batch_size=4, micro_batches=1)
    return trainer.setup(C.from_mapping(data, over))


def test_step_on_the_spiking_network():
    exp = tiny_setup()
    net, obj = exp.net, exp.rule.objective
    batch = exp.task.batch(exp.seeds, "train", 1, range(4), net.device, net.dtype)
    loss = network_loss(net, batch.x, batch.target, obj)
    opt = dopamine(DopamineConfig(sigma=0.2, sigma_relative=True, eta_law="fixed", eta0=0.01),
                   exp.seeds, mask=network_masks(net))
    new, state, info = opt.step(loss, net.params, opt.init(net.params))
    assert bool(torch.isfinite(info.loss).all()) and bool((info.delta != 0).any())
    g = bptt(net, batch.x, batch.target, obj)
    torch.testing.assert_close(info.loss, g.task_loss + g.reg_loss, rtol=1e-12, atol=0)   # the BPTT loss
    for w, w0, m in zip(new, net.params, network_masks(net)):
        assert torch.equal(w[m == 0], w0[m == 0])           # absent synapses stay absent
        for i, d in enumerate(info.delta):                  # a flat loss (δ = 0) moves nothing
            assert torch.equal(w[i], w0[i]) == (float(d) == 0)


def test_step_on_the_fixed_point_emulator():
    exp = tiny_setup(**{"train.backend": "fixed"})
    emu = exp.emulator
    lim = emu.fp.weight_limit
    batch = exp.task.batch(exp.seeds, "train", 1, range(4), exp.net.device, exp.net.dtype)
    w0 = emu.initial_weights()
    loss = emulator_loss(emu, batch.x, batch.target, batch.keys, 1)
    cfg = DopamineConfig(sigma=2, noise="rademacher", trials=2, eta_law="fixed", eta0=3e7)
    opt = dopamine(cfg, exp.seeds, mask=network_masks(emu.net), weight_range=(-lim - 1, lim))
    new, state, info = opt.step(loss, w0, opt.init(w0))
    assert cfg.passes == 3
    for w, old, m in zip(new, w0, network_masks(emu.net)):
        assert w.dtype == torch.int64
        assert int(w.min()) >= -lim - 1 and int(w.max()) <= lim
        assert torch.equal(w[m == 0], old[m == 0])
    assert any(not torch.equal(w, old) for w, old in zip(new, w0))
    res = emu.run(w0, batch.x, batch.target, batch.keys, 1, learn=False)
    torch.testing.assert_close(info.loss, res.task_loss + res.reg_loss, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# training loops and a frozen reference

def test_training_loops_run_and_count_forward_passes():
    r = train_xor("adam", [0, 1], 4, 30, lr=0.1, progress=False)
    assert r["updates_max"] == 10 and r["passes_per_update"] == 3
    d = forecast_data("rossler", steps=120, lookback=8)
    wp = method_config("wp", DopamineConfig(sigma=1e-3, reset_every=1, reset_leaf="w_hh"), 1e-3)
    assert wp.eta_law == "fixed" and wp.reset_every == 0 and wp.eta0 == 1e-3
    f = train_forecast("wp", d, [0, 1], 4, 20, wp, eval_every=5, progress=False)
    assert f["updates"] == 10 and f["curve"][-1]["forward_passes"] == 20 and len(f["eta_log"]) == 2


PINNED = [0.7003568821732271, 0.7561724706996713, 0.7002217986043238, 0.7499664598597684]


def test_seeded_short_run_is_pinned():
    x, y = xor_data()
    opt = dopamine(DopamineConfig(sigma=1e-2, eta_law="slow_ema", eta0=0.05), [0, 1])
    p = mlp_init([0, 1], hidden=2)
    st = opt.init(p)
    losses = []
    for _ in range(4):
        p, st, info = opt.step(lambda q: bce_loss(mlp_logits(q, x), y), p, st)
        losses.append(info.loss.tolist())
    got = losses[0] + losses[-1]
    assert got == pytest.approx(PINNED, rel=1e-9, abs=0), got
