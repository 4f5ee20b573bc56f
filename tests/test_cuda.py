"""CUDA checks: run on the GPU machine (`python -m pytest tests/test_cuda.py`); skipped elsewhere."""
import pytest
import torch

from lava_diffmod import config as config_mod, rng
from lava_diffmod.training import trainer

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def small_cfg(rule, device, **extra):
    over = {"rule.name": rule, "train.device": device, "train.dtype": "float64", "train.seeds": [1, 2],
            "train.batch_size": 4, "train.micro_batches": 1, "train.progress": False,
            "task.params": {"n_cues": 3, "cue_ms": 30, "gap_ms": 10, "delay_ms": 40, "decision_ms": 30}}
    over.update(extra)
    return config_mod.load("examples/cue_accumulation.toml", over)


def test_counter_rng_same_bits_on_cpu_and_cuda():
    keys = torch.tensor([[3, 2**31 + 7], [2**32 - 1, 0]])
    cpu = rng.hashes(keys, (2, 2, 100_000))
    gpu = rng.hashes(keys.cuda(), (2, 2, 100_000)).cpu()
    assert torch.equal(cpu, gpu)


def test_task_batches_same_bits_on_cpu_and_cuda():
    cfg = small_cfg("diffusion", "cpu")
    exp = trainer.setup(cfg)
    cpu = exp.task.batch([1, 2], "train", 5, range(0, 4), "cpu", torch.float32)
    gpu = exp.task.batch([1, 2], "train", 5, range(0, 4), "cuda", torch.float32)
    assert torch.equal(cpu.x, gpu.x.cpu()) and torch.equal(cpu.target, gpu.target.cpu())


@pytest.mark.parametrize("rule", ["diffusion", "eprop", "bptt"])
def test_graphed_engine_equals_eager_bit_for_bit(rule):
    eager = trainer.setup(small_cfg(rule, "cuda", **{"train.cuda_graphs": False}))
    graphed = trainer.setup(small_cfg(rule, "cuda"))
    assert graphed.engine.graphs and not eager.engine.graphs
    for it in (1, 2):   # second call replays the captured graph with new inputs
        batch = trainer.train_batch(eager, it, 0)
        a = eager.engine.gradients(eager.net.params, batch.x, batch.target, batch.keys)
        b = graphed.engine.gradients(graphed.net.params, batch.x, batch.target, batch.keys)
        for ga, gb in zip(a.grads, b.grads):
            assert torch.equal(ga, gb)
        assert torch.equal(a.task_loss, b.task_loss)


def test_compiled_online_step_matches_cpu():
    """Online e-prop on CUDA runs its per-synapse step as one torch.compile'd kernel: the
    gradients equal the CPU's plain step to float64 rounding, sparse and dense."""
    for storage in ("sparse", "dense"):
        extra = {"rule.mode": "online", "rule.storage": storage}
        cpu = trainer.setup(small_cfg("diffusion", "cpu", **extra))
        gpu = trainer.setup(small_cfg("diffusion", "cuda", **extra))
        b, gb = trainer.train_batch(cpu, 1, 0), trainer.train_batch(gpu, 1, 0)
        a = cpu.engine.gradients(cpu.net.params, b.x, b.target, b.keys)
        g = gpu.engine.gradients(gpu.net.params, gb.x, gb.target, gb.keys)
        for ga, gg in zip(a.grads, g.grads):
            torch.testing.assert_close(ga, gg.cpu(), rtol=1e-9, atol=1e-12)


def test_cuda_float64_gradients_match_cpu():
    """Also BPTT by autodiff on CUDA against the CPU's adjoint scan (the default)."""
    for rule, mode in (("diffusion", "adjoint"), ("bptt", "adjoint"), ("bptt", "autograd")):
        cpu = trainer.setup(small_cfg(rule, "cpu"))
        gpu = trainer.setup(small_cfg(rule, "cuda", **{"rule.bptt_mode": mode}))
        batch = trainer.train_batch(cpu, 1, 0)
        a = cpu.engine.gradients(cpu.net.params, batch.x, batch.target, batch.keys)
        gb = trainer.train_batch(gpu, 1, 0)
        b = gpu.engine.gradients(gpu.net.params, gb.x, gb.target, gb.keys)
        for ga, gg in zip(a.grads, b.grads):
            torch.testing.assert_close(ga, gg.cpu(), rtol=1e-9, atol=1e-12)


def fixed_cfg(device, **extra):
    over = {"train.backend": "fixed", "fixed.lr": 50.0, "train.iterations": 3, "train.eval_every": 3}
    over.update(extra)
    return small_cfg("diffusion", device, **over)


# ALIF's ε^a on chip in tag_2, 16-step epochs with epoch means
EPS_A = {"fixed.switches": {"preset": "hardware", "drop_alif_eps_a": False, "eps_a_tag2": True, "t_epoch": 16,
                            "epoch_mean": True}}


@pytest.mark.parametrize("switches", [{}, EPS_A], ids=["hardware", "eps_a_tag2"])
@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_fixed_emulator_same_bits_on_cpu_and_cuda(storage, switches):
    """The hardware-faithful emulator (every switch on; also with ε^a in tag_2) gives identical
    integers on both devices (weights, spikes, integer tags, events), with its per-synapse state
    dense (on CUDA the tag step is then the torch.compile'd kernel) or at the synapses only."""
    cpu = trainer.setup(fixed_cfg("cpu", **{"rule.storage": storage}, **switches))
    gpu = trainer.setup(fixed_cfg("cuda", **{"rule.storage": storage}, **switches))
    assert gpu.emulator.tag_outer is not cpu.emulator.tag_outer
    for it in (1, 2):
        b_cpu = cpu.task.batch(cpu.seeds, "train", it, range(4), "cpu", torch.float64)
        b_gpu = gpu.task.batch(gpu.seeds, "train", it, range(4), "cuda", torch.float64)
        a = cpu.emulator.run(cpu.emulator.initial_weights(), b_cpu.x, b_cpu.target, b_cpu.keys, it, record=True)
        b = gpu.emulator.run(gpu.emulator.initial_weights(), b_gpu.x, b_gpu.target, b_gpu.keys, it, record=True)
        for wa, wb in zip(a.weights, b.weights):
            assert torch.equal(wa, wb.cpu())
        assert a.record["tag"].dtype == torch.int32
        assert torch.equal(a.record["tag"], b.record["tag"].cpu())
        assert torch.equal(a.record["z"], b.record["z"].cpu())
        if a.record.get("d") is not None:
            assert torch.equal(a.record["d"], b.record["d"].cpu())
        for k in a.events:
            assert torch.equal(a.events[k], b.events[k].cpu()), k


@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_graphed_emulator_equals_eager_bit_for_bit(storage):
    """Emulator.batch replays a CUDA graph of run(); a second iteration replays it with new inputs."""
    exp = trainer.setup(fixed_cfg("cuda", **{"rule.storage": storage}))
    em = exp.emulator
    w = em.initial_weights()
    for it in (1, 2):
        b = exp.task.batch(exp.seeds, "train", it, range(4), "cuda", torch.float64)
        for learn in (True, False):
            a, g = em.run(w, b.x, b.target, b.keys, it, learn), em.batch(w, b.x, b.target, b.keys, it, learn)
            for wa, wg in zip(a.weights, g.weights):
                assert torch.equal(wa, wg)
            assert torch.equal(a.y_window, g.y_window) and torch.equal(a.task_loss, g.task_loss)
            assert a.events.keys() == g.events.keys()
            for k in a.events:
                assert torch.equal(a.events[k], g.events[k]), k
        w = a.weights
    assert len(em._graphed) == 2      # one graph per mode (learn or not), replayed at it = 2


def test_fixed_training_same_bits_on_cpu_and_cuda(tmp_path):
    from lava_diffmod.training import checkpoint
    trainer.train(fixed_cfg("cpu"), tmp_path / "cpu")
    trainer.train(fixed_cfg("cuda"), tmp_path / "gpu")
    like = trainer.setup(fixed_cfg("cpu")).emulator.initial_weights()
    a = checkpoint.load(tmp_path / "cpu" / trainer.CHECKPOINT, like)[0]
    b = checkpoint.load(tmp_path / "gpu" / trainer.CHECKPOINT, like)[0]
    for wa, wb in zip(a, b):
        assert torch.equal(wa, wb)
