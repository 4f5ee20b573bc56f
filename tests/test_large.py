"""Large networks: row-block structure draws and sparse per-synapse trace storage."""
import dataclasses

import pytest
import torch

from lava_diffmod import config, rng
from lava_diffmod.network import structure as st
from lava_diffmod.rules import gradient_fn, synapses
from lava_diffmod.rules import eprop
from lava_diffmod.rules.eprop import synapse_layout
from lava_diffmod.training import checkpoint, trainer
from helpers import tiny


def test_draw_offset_is_a_slice_of_the_whole_draw():
    whole = rng.uniform53(7, (9, 5))
    assert torch.equal(rng.uniform53(7, (3, 5), start=4 * 5), whole[4:7])
    assert torch.equal(rng.normal(7, (2, 5), start=5), rng.normal(7, (9, 5))[1:3])
    assert torch.equal(rng.truncated_normal(7, (2, 5), -2, 2, start=35),
                       rng.truncated_normal(7, (9, 5), -2, 2)[7:9])


@pytest.mark.parametrize("connectivity", ["local", "sparse", "full", "nearest_neighbours"])
@pytest.mark.parametrize("init", ["he", "gaussian"])
def test_structure_in_row_blocks_equals_one_block(monkeypatch, connectivity, init):
    cfg = config.load(config.config_path("cue_accumulation"),
                      {"network.connectivity": connectivity, "network.init": init})
    whole = st.build_structure(cfg, 40, 2, 3)
    monkeypatch.setattr(st, "BLOCK", 250)       # 2 rows per block at N = 100
    blocks = st.build_structure(cfg, 40, 2, 3)
    for name in ("m_rec", "w_rec", "m_in", "w_in", "w_out"):
        assert torch.equal(getattr(whole, name), getattr(blocks, name)), name


def online_setup(rule: str, **over):
    data = tiny(seeds=[1, 2], batch_size=4, micro_batches=1)
    data["rule"] = {"name": rule, "mode": "online", **over}
    return trainer.setup(config.from_mapping(data))


@pytest.mark.parametrize("rule", ["eprop", "diffusion"])
def test_sparse_traces_give_the_dense_gradients(rule):
    """Two seeds with different masks (the shorter synapse list is padded): sparse = dense to
    float64 rounding, and both equal the factorised form."""
    exp = online_setup(rule)
    b = trainer.train_batch(exp, 1, 0)
    net = exp.net
    assert exp.net.has_alif
    grads = {}
    for storage in ("dense", "sparse"):
        grads[storage] = gradient_fn(dataclasses.replace(exp.rule, storage=storage), net)(
            net, b.x, b.target, b.keys).grads
    fact = gradient_fn(dataclasses.replace(exp.rule, mode="factorised"), net)(net, b.x, b.target, b.keys).grads
    layout = synapse_layout(net, "sparse")
    counts = torch.cat([net.m_in, net.m_rec], 1).flatten(1).count_nonzero(1)
    assert counts[0] != counts[1] and layout.n_synapses == int(counts.max())
    for d, s, f in zip(grads["dense"], grads["sparse"], fact):
        scale = float(d.abs().max())
        assert scale > 0
        assert float((d - s).abs().max()) <= 1e-13 * scale
        assert float((d - f).abs().max()) <= 1e-12 * scale


@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_synapse_step_traces_as_one_graph(storage):
    """The per-synapse step that CUDA compiles into one kernel traces without a graph break
    (torch.compile fullgraph; the eager backend runs the traced graph) and gives the same bits."""
    exp = online_setup("diffusion", storage=storage)
    b = trainer.train_batch(exp, 1, 0)
    net = exp.net
    traced = torch.compile(eprop.synapse_step, backend="eager", dynamic=False, fullgraph=True)
    syn, mod = synapse_layout(net, storage), exp.rule.modulator(net)
    plain = eprop.eprop_online(net, b.x, b.target, exp.rule.objective, mod, b.keys, syn)
    fused = eprop.eprop_online(net, b.x, b.target, exp.rule.objective, mod, b.keys, syn, step=traced)
    for a, c in zip(plain.grads, fused.grads):
        assert float(a.abs().max()) > 0 and torch.equal(a, c)
    assert eprop.compiled_synapse_step(torch.device("cpu")) is eprop.synapse_step


def test_sparse_layout_scatters_only_onto_synapses():
    mask = torch.zeros((2, 3, 4), dtype=torch.float64)
    mask[0, 0, 1] = mask[0, 2, 3] = mask[1, 1, 0] = 1
    lay = synapses.SparseSynapses(mask)
    assert lay.n_synapses == 2
    g = torch.tensor([[1.0, 2.0], [3.0, 99.0]], dtype=torch.float64)     # 99 sits on seed 1's pad
    dense = lay.to_dense(g)
    assert dense[0, 0, 1] == 1 and dense[0, 2, 3] == 2 and dense[1, 1, 0] == 3
    assert float(dense.sum()) == 6
    u = torch.arange(1, 2 * 1 * 3 + 1, dtype=torch.float64).reshape(2, 1, 3)     # (S, B, P)
    assert lay.pre(u).tolist() == [[[1.0, 3.0]], [[5.0, 0.0]]]                  # the pad reads 0
    v = torch.arange(1, 2 * 1 * 4 + 1, dtype=torch.float64).reshape(2, 1, 4)     # (S, B, N)
    assert lay.post(v).tolist() == [[[2.0, 4.0]], [[5.0, 5.0]]]
    assert lay.element_index(2)[0].tolist() == [[1, 11], [13, 23]]            # b·P·N + p·N + n


def test_auto_storage():
    mask = (torch.rand((1, 64, 64)) < 0.1).double()
    assert isinstance(synapses.synapses(mask, "auto"), synapses.SparseSynapses)
    assert isinstance(synapses.synapses(torch.ones((1, 64, 64)), "auto"), synapses.DenseSynapses)  # dense mask
    with pytest.raises(ValueError, match="rule.storage = 'csr'"):
        synapses.synapses(mask, "csr")


def test_storage_config_error():
    data = tiny()
    data["rule"] = {"storage": "csr"}
    with pytest.raises(config.ConfigError, match="rule.storage = 'csr': must be one of auto, dense, sparse"):
        config.from_mapping(data)


def test_training_with_sparse_traces_matches_dense(tmp_path):
    ends = []
    for storage in ("dense", "sparse"):
        data = tiny(iterations=3, eval_every=3)
        data["rule"] = {"name": "diffusion", "mode": "online", "storage": storage}
        cfg = config.from_mapping(data)
        trainer.train(cfg, tmp_path / storage)
        ends.append(checkpoint.load(tmp_path / storage / trainer.CHECKPOINT, trainer.setup(cfg).net.params)[0])
    for a, b in zip(*ends):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_ten_thousand_neurons_on_a_100x100_grid():
    """The paper's local connectivity at N = 10,000: ~10 % density, sparse traces chosen."""
    cfg = config.load(config.config_path("cue_accumulation"),
                      {"network.grid_h": 100, "network.grid_w": 100, "neuron.n_lif": 5000,
                       "neuron.n_alif": 5000, "rule.mode": "online", "train.seeds": [1]})
    s = st.build_structure(cfg, 40, 2, 1)
    assert s.m_rec.shape == (10000, 10000) and float(s.m_rec.diagonal().abs().sum()) == 0
    assert 0.09 < float(s.m_rec.mean()) < 0.12
    lay = synapses.synapses(torch.cat([s.m_in, s.m_rec])[None], "auto")
    assert isinstance(lay, synapses.SparseSynapses)
    assert lay.n_synapses == int(s.m_in.count_nonzero() + s.m_rec.count_nonzero())


@pytest.mark.parametrize("rule", ["eprop", "diffusion"])
@pytest.mark.parametrize("switches", [
    "hardware",                                                      # LIF-style tags (ε^a dropped), shared SR
    {"preset": "hardware", "drop_alif_eps_a": False, "shared_rng": False, "tag_leak_grid": "exact"},
    {"preset": "hardware", "drop_alif_eps_a": False, "eps_a_tag2": True, "t_epoch": 16, "shared_rng": False},
    "off",                                                           # float traces through the emulator
])
def test_fixed_emulator_sparse_state_equals_dense(rule, switches):
    """The same integer weights, bit for bit, with per-synapse tags and traces kept dense or at
    the synapses only (per-element random streams drawn at the synapses' dense indices)."""
    data = tiny(seeds=[1, 2], batch_size=4, micro_batches=1)
    data["rule"] = {"name": rule}
    data["train"]["backend"] = "fixed"
    data["fixed"] = {"hw": "loihi2", "switches": switches}
    results = {}
    for storage in ("dense", "sparse"):
        data["rule"]["storage"] = storage
        exp = trainer.setup(config.from_mapping(data))
        b = trainer.train_batch(exp, 1, 0)
        emu = exp.emulator
        assert isinstance(emu.syn, synapses.SparseSynapses) == (storage == "sparse")
        results[storage] = emu.run(emu.initial_weights(), b.x, b.target, b.keys, 1)
    dense, sparse = results["dense"], results["sparse"]
    w0 = exp.emulator.initial_weights()
    assert any(not torch.equal(a, b) for a, b in zip(dense.weights, w0))          # it learned
    for a, b in zip(dense.weights, sparse.weights):
        assert torch.equal(a, b)
    assert torch.equal(dense.task_loss, sparse.task_loss)
    for k, v in dense.events.items():   # the dense block also counts tags (t, d) of absent synapses
        per_synapse = k in ("tag", "tag_2 d (eps^a)")
        assert torch.equal(v, sparse.events[k]) if not per_synapse else bool((sparse.events[k] <= v).all())


def test_fixed_emulator_sparse_needs_batch_cadence():
    data = tiny()
    data["rule"] = {"storage": "sparse"}
    data["train"]["backend"] = "fixed"
    data["fixed"] = {"switches": {"preset": "hardware", "cadence": "step"}}
    with pytest.raises(config.ConfigError, match="rule.storage = 'sparse'.*cadence = 'batch'"):
        trainer.setup(config.from_mapping(data))
