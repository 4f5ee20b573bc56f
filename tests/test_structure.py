"""Grid placement, torus distance, masks and initial weights (MODEL.md §2)."""
import math

import pytest
import torch

from lava_diffmod.config import Config, NetworkConfig, from_mapping
from lava_diffmod.float.rsnn import Network
from lava_diffmod.network import structure as st


def test_max_coordinate_quirk_puts_opposite_edges_at_distance_zero():
    cells = torch.arange(100)                       # full 10 x 10 grid, cell = row * 10 + col
    x, y = st.coordinates(cells, 10, 10, max_coord_norm=True)
    d2 = st.torus_sq_distance(x, y)
    assert d2[0, 9] == 0 and d2[0, 90] == 0         # col 0 ≡ col 9, row 0 ≡ row 9
    assert d2[0, 1] == pytest.approx((1 / 9) ** 2)
    x, y = st.coordinates(cells, 10, 10, max_coord_norm=False)
    d2 = st.torus_sq_distance(x, y)
    assert d2[0, 9] == pytest.approx(0.1 ** 2)       # neighbours across the edge
    assert d2[0, 5] == pytest.approx(0.5 ** 2)       # the farthest column


def test_local_connection_probabilities_match_model_table():
    cells = torch.arange(100)
    d2 = st.torus_sq_distance(*st.coordinates(cells, 10, 10, True))
    p = st.local_connection_probability(d2, 0.012)
    # MODEL.md §2: lateral / diagonal / 2 / 3 / 4 cells on the 10 x 10 grid, quirk on
    assert [round(float(p[0, j]), 3) for j in (1, 11, 2, 3, 4)] == [0.436, 0.374, 0.263, 0.090, 0.016]
    assert float(p[0, 0]) == 0.5


def test_local_mask_mean_out_degree_and_zero_diagonal():
    cfg = NetworkConfig()
    degrees = []
    for seed in range(8):
        cells = st.place_neurons(100, 10, 10, st.key(seed, "placement"))
        m = st.recurrent_mask(cfg, cells, st.key(seed, "recurrent_mask"))
        assert torch.all(m.diagonal() == 0)
        assert not torch.equal(m, m.T)                # independent per ordered pair
        degrees.append(float(m.sum(1).mean()))
    mean = sum(degrees) / len(degrees)
    assert abs(mean - 10.2) < 0.5                    # MODEL.md: mean out-degree 10.2


def test_nearest_neighbours_mask_is_the_moore_neighbourhood():
    cfg = NetworkConfig(connectivity="nearest_neighbours", grid_h=6, grid_w=7)
    cells = st.place_neurons(42, 6, 7, st.key(0, "placement"))
    m = st.recurrent_mask(cfg, cells, st.key(0, "recurrent_mask"))
    assert torch.all(m.sum(0) == 8) and torch.all(m.sum(1) == 8) and torch.equal(m, m.T)
    i, j = 0, int(m[0].nonzero()[0])
    ri, ci, rj, cj = cells[i] // 7, cells[i] % 7, cells[j] // 7, cells[j] % 7
    assert min((ri - rj) % 6, (rj - ri) % 6) <= 1 and min((ci - cj) % 7, (cj - ci) % 7) <= 1


def test_exact_count_masks_and_placement():
    m = st.exact_count_mask((40, 100), 0.1, st.key(3, "x"))
    assert int(m.sum()) == 400
    cells = st.place_neurons(100, 10, 10, st.key(3, "placement"))
    assert sorted(cells.tolist()) == list(range(100))


def test_he_init_is_truncated_with_variance_two_over_fan_in():
    w = st.initial_weights((200, 400), "he", st.key(1, "w"))
    scale = math.sqrt(2 / 200) / st.HE_TRUNC_STD
    assert float(w.abs().max()) <= 2 * scale + 1e-12
    assert float(w.var()) == pytest.approx(2 / 200, rel=0.03)
    g = st.initial_weights((200, 400), "gaussian", st.key(1, "w"))
    assert float(g.std()) == pytest.approx(1 / math.sqrt(200), rel=0.03)


def test_built_network_follows_the_spec():
    cfg = from_mapping({"network": {"feedback": "symmetric_init"}})
    s = st.build_structure(cfg, 40, 2, seed=5)
    assert int(s.m_in.sum()) == 400 and int(s.m_out.sum()) == 20
    assert torch.all(s.w_in[s.m_in == 0] == 0) and torch.all(s.w_out[s.m_out == 0] == 0)
    assert torch.all(s.w_rec.diagonal() == 0)
    assert torch.equal(s.feedback, s.w_out)          # symmetric at initialisation, sparse
    per_neuron = st.build_structure(from_mapping({"network": {"readout_mode": "per_neuron"}}), 40, 2, 5)
    rows = per_neuron.m_out.sum(1)
    assert int((rows == 2).sum()) == 10 and int((rows == 0).sum()) == 90


def test_feedback_variants():
    dense = st.build_structure(from_mapping({"network": {"feedback": "random_dense", "gain_fb": 0.5}}), 40, 2, 5)
    assert int((dense.feedback != 0).sum()) == 200
    sparse = st.build_structure(from_mapping({"network": {"feedback": "random_sparse"}}), 40, 2, 5)
    frac = float((sparse.feedback != 0).double().mean())
    assert 0.02 < frac < 0.25
    # the feedback mask is independent of the readout mask
    assert not torch.equal(sparse.feedback != 0, sparse.m_out != 0)


def test_components_use_independent_streams():
    a = st.build_structure(Config(), 40, 2, seed=1)
    b = st.build_structure(from_mapping({"network": {"in_density": 0.2}}), 40, 2, seed=1)
    assert torch.equal(a.cells, b.cells) and torch.equal(a.m_rec, b.m_rec)
    assert not torch.equal(a.m_in, b.m_in)


def test_from_arrays_checks_shapes():
    with pytest.raises(ValueError, match="do not agree on N"):
        Network.from_arrays(w_in=torch.zeros(3, 4), w_rec=torch.zeros(5, 5), w_out=torch.zeros(5, 2))


def test_network_on_cpu_is_identical_in_float32_and_float64_structure():
    cfg = Config()
    n32 = Network.from_config(cfg, [1, 2], 40, 2, dtype=torch.float32)
    n64 = Network.from_config(cfg, [1, 2], 40, 2, dtype=torch.float64)
    assert torch.equal(n32.params.w_rec, n64.params.w_rec.float())
    assert torch.equal(n32.cells, n64.cells)
    assert not torch.equal(n32.cells[0], n32.cells[1])


@pytest.mark.slow
@pytest.mark.parametrize("h, n, expected", [(10, 100, 10.2), (20, 400, 41.4)])
def test_mean_out_degree_over_many_seeds(h, n, expected):
    """MODEL.md §2 (inferred values): mean out-degree 10.2 (10 x 10) and 41.4 (20 x 20)."""
    cfg = NetworkConfig(grid_h=h, grid_w=h)
    degrees = [float(st.recurrent_mask(cfg, st.place_neurons(n, h, h, st.key(s, "placement")),
                                       st.key(s, "recurrent_mask")).sum(1).mean()) for s in range(40)]
    assert sum(degrees) / len(degrees) == pytest.approx(expected, abs=0.15)


@pytest.mark.slow
def test_neurons_with_feedback_over_many_seeds():
    """MODEL.md §2: on average 19.0 of 100 neurons have a readout synapse (2 outputs, 20 synapses)."""
    counts = [int((st.readout_mask(NetworkConfig(), 100, 2, st.key(s, "readout_mask")).sum(1) > 0).sum())
              for s in range(400)]
    assert sum(counts) / len(counts) == pytest.approx(19.0, abs=0.15)
