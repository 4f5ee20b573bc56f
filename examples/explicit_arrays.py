"""Check our model against another e-prop implementation: build a network from explicit arrays,
run it forward, and ask for BPTT and e-prop gradients without the trainer.

    python examples/explicit_arrays.py

Replace the random arrays below with the weights, masks and constants of the other code, and
pick the conventions it uses (NeuronConfig and Objective fields; see the README table).
"""
import numpy as np
import torch

from lava_diffmod.config import NeuronConfig
from lava_diffmod.float.readout import Objective
from lava_diffmod.float.rsnn import Network, forward
from lava_diffmod.rules import bptt, eprop_factorised, eprop_online

rng = np.random.default_rng(0)
n_in, n_rec, n_out, T, batch = 20, 30, 2, 300, 4

# (pre, post) layout: entry [i, j] is the synapse i -> j
w_in = rng.normal(0, 0.2 / np.sqrt(n_in), (n_in, n_rec))
w_rec = rng.normal(0, 0.05 / np.sqrt(n_rec), (n_rec, n_rec))
np.fill_diagonal(w_rec, 0)
w_out = rng.normal(0, 1 / np.sqrt(n_rec), (n_rec, n_out))
beta = np.r_[np.zeros(n_rec // 2), np.full(n_rec - n_rec // 2, 0.0174)]   # LIF, then ALIF

# conventions of Bellec et al.'s EligALIF tutorial cell (see the README table)
neuron = NeuronConfig(thr=0.6, tau_m=20.0, tau_out=20.0, tau_a=2000.0, n_ref=5, gamma=0.3,
                      adapt_increment="1", input_scaling="1", refractory="including_spike")
net = Network.from_arrays(w_in=w_in, w_rec=w_rec, w_out=w_out, beta=beta, neuron=neuron,
                          tracking_feedback=True, dtype=torch.float64)

x = torch.as_tensor(rng.random((T, 1, batch, n_in)) < 0.2, dtype=torch.float64)   # (T, S, B, n_in)
labels = torch.as_tensor(rng.integers(0, n_out, (1, batch)))
obj = Objective("classification", window=50, c_reg=0.0)

rec = forward(net, x)
print(f"firing rate {rec.z.mean().item() * 1000:.1f} Hz, readout shape {tuple(rec.y.shape)}")
keys = torch.zeros(1, batch, dtype=torch.int64)
e_online = eprop_online(net, x, labels, obj, None, keys).grads
e_fact = eprop_factorised(net, x, labels, obj, None, keys).grads
stop_grad = bptt(net, x, labels, obj, detach_rec=True, detach_reset=True).grads
full = bptt(net, x, labels, obj).grads
for name, a, b, c, d in zip(e_fact._fields, e_online, e_fact, stop_grad, full):
    cos = torch.nn.functional.cosine_similarity(b.flatten(), d.flatten(), dim=0).item()
    print(f"{name}: |online - factorised| = {(a - b).abs().max().item():.1e}, "
          f"|e-prop - autodiff(stop-grad)| = {(b - c).abs().max().item():.1e}, cos(e-prop, BPTT) = {cos:.3f}")
