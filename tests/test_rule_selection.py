"""ModProp and the dopamine optimizer selected like the other rules (``rule.name``): training,
resume, the fixed backend, and the config errors."""
import pytest
import torch

from lava_diffmod import cli
from lava_diffmod import config as C
from lava_diffmod.training import checkpoint, trainer

from helpers import tiny


def final_weights(run_dir, cfg):
    exp = trainer.setup(cfg)
    like = exp.net.params if exp.emulator is None else exp.emulator.initial_weights()
    return checkpoint.load(run_dir / trainer.CHECKPOINT, like)[0]


def test_modprop_with_mu_zero_trains_exactly_like_eprop(tmp_path):
    weights = {}
    for name, over in (("eprop", {"rule.name": "eprop"}), ("modprop", {"rule.name": "modprop", "modprop.mu": 0.0})):
        cfg = C.from_mapping(tiny(iterations=3), over)
        trainer.train(cfg, tmp_path / name)
        weights[name] = final_weights(tmp_path / name, cfg)
    assert all(torch.equal(a, b) for a, b in zip(weights["eprop"], weights["modprop"]))


def test_modprop_and_mdgl_differ_from_eprop(tmp_path):
    cfg = C.from_mapping(tiny(iterations=1), {"rule.name": "modprop"})
    exp = trainer.setup(cfg)
    assert bool((exp.rule.mu > 0).all())                  # auto: mu_scale · <psi> of the initial nets
    batch = trainer.train_batch(exp, 1, 0)
    g = {}
    for name, over in (("eprop", {"rule.name": "eprop"}), ("modprop", {"rule.name": "modprop"}),
                       ("mdgl", {"rule.name": "modprop", "modprop.truncation": "mdgl"})):
        e = trainer.setup(C.from_mapping(tiny(iterations=1), over))
        g[name] = e.engine.gradients(e.net.params, batch.x, batch.target, batch.keys).grads
    assert torch.equal(g["eprop"].w_out, g["modprop"].w_out)           # the readout is not recurrent
    assert not torch.equal(g["eprop"].w_rec, g["modprop"].w_rec)
    assert not torch.equal(g["mdgl"].w_rec, g["modprop"].w_rec)


def interrupted_equals_uninterrupted(tmp_path, over):
    cfg = C.from_mapping(tiny(iterations=4, checkpoint_every=1), over)
    trainer.train(cfg, tmp_path / "whole")

    def stop(n):
        if n == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        trainer.train(cfg, tmp_path / "cut", on_iteration=stop)
    trainer.train(cfg, tmp_path / "cut", resume=True)
    a, b = final_weights(tmp_path / "whole", cfg), final_weights(tmp_path / "cut", cfg)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    return cfg, a


def test_dopamine_float_resumes_exactly_and_learns_only_unmasked_weights(tmp_path):
    cfg, w = interrupted_equals_uninterrupted(
        tmp_path, {"rule.name": "dopamine", "dopamine.sigma": 0.05, "dopamine.sigma_relative": True})
    exp = trainer.setup(cfg)
    assert all(bool((x[m == 0] == 0).all()) for x, m in zip(w, (exp.net.m_in, exp.net.m_rec, exp.net.m_out)))
    assert not all(torch.equal(x, y) for x, y in zip(w, exp.net.params))
    rows = [r for r in trainer.read_metrics(tmp_path / "whole") if r["split"] == "train"]
    assert all(0 < r["eta"] <= 0.05 for r in rows)


def test_dopamine_fixed_point_keeps_integer_weights_in_range(tmp_path):
    cfg, w = interrupted_equals_uninterrupted(
        tmp_path, {"rule.name": "dopamine", "train.backend": "fixed", "dopamine.sigma": 2,
                   "dopamine.noise": "rademacher", "dopamine.eta_law": "fixed", "dopamine.eta0": 1e4})
    em = trainer.setup(cfg).emulator
    assert all(x.dtype == torch.int64 for x in w)
    assert all(int(x.max()) <= em.fp.weight_limit and int(x.min()) >= -em.fp.weight_limit - 1 for x in w)
    assert not all(torch.equal(x, y) for x, y in zip(w, em.initial_weights()))


@pytest.mark.parametrize("over, message", [
    ({"dopamine.nope": 1}, "dopamine.nope: unknown key"),
    ({"dopamine.sigma": -1.0}, "dopamine.sigma = -1.0: must be > 0"),
    ({"modprop.mu": -0.5}, "modprop.mu = -0.5"),
    ({"modprop.truncation": "two"}, "modprop.truncation"),
    ({"modprop.truncation": "mdgl", "modprop.form": "online"}, "use form = 'backward' for MDGL"),
    ({"rule.name": "modprop", "train.backend": "fixed"}, "the fixed backend trains eprop, diffusion and dopamine"),
    ({"rule.name": "dopamine", "train.backend": "fixed", "dopamine.sigma": 0.5, "dopamine.noise": "rademacher"},
     "whole number of LSB"),
])
def test_config_errors_name_the_field(over, message):
    with pytest.raises(C.ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        cfg = C.from_mapping(tiny(), over)
        trainer.setup(cfg)


def test_the_lava_network_refuses_rules_it_cannot_learn_with():
    from lava_diffmod.lava import network as LN
    cfg = C.from_mapping(tiny(), {"rule.name": "modprop"})
    with pytest.raises(ValueError, match="rule.name = 'modprop': the Lava network learns with e-prop"):
        LN.network_spec(cfg, 1, "fixed", 70, True)


def test_cli_selects_the_rules_and_c_reg_falls_back_to_eprop(tmp_path, capsys):
    cfg = C.load(C.config_path("dms"), {"rule.name": "modprop"})
    assert cfg.c_reg() == cfg.rule.c_reg["eprop"]
    path = tmp_path / "tiny.toml"
    path.write_text(C.dumps(C.from_mapping(tiny(iterations=2), {})))
    assert cli.main(["train", "--config", str(path), "--rule", "dopamine", "--out", str(tmp_path / "r")]) == 0
    assert "dopamine" in capsys.readouterr().out
