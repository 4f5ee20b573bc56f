"""The trainer (MODEL.md §3.6, §5.4): resume = uninterrupted, micro-batching, checkpoints,
divergence stop, run directory, batched seeds, optimisers."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch

from lava_diffmod import cli
from lava_diffmod import config as C
from lava_diffmod.float.rsnn import Params
from lava_diffmod.training import checkpoint, optim, trainer
from lava_diffmod.training.checkpoint import CheckpointError
from lava_diffmod.training.trainer import CHECKPOINT, TrainingDiverged, setup, train

REPO = Path(__file__).resolve().parents[1]
from helpers import TINY  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"




def tiny(**overrides) -> C.Config:
    return C.from_mapping(TINY, overrides)


def final_state(cfg: C.Config, run_dir: Path):
    """(params, opt state, iteration) of a run directory's checkpoint."""
    like = setup(cfg).net.params
    params, state, iteration, _ = checkpoint.load(Path(run_dir) / CHECKPOINT, like)
    return params, state, iteration


def assert_params_equal(a: Params, b: Params) -> None:
    for name, x, y in zip(Params._fields, a, b):
        assert torch.equal(x, y), f"{name} differs (max {float((x - y).abs().max()):.3g})"


def assert_same_state(a, b) -> None:
    assert a[2] == b[2]
    assert_params_equal(a[0], b[0])
    assert a[1].step == b[1].step
    for ga, gb in ((a[1].m, b[1].m), (a[1].v, b[1].v)):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert_params_equal(ga, gb)


def assert_no_duplicate_rows(rows: list[dict]) -> None:
    keys = [(r["iteration"], r["split"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate (iteration, split, seed) rows"


class Interrupt(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# resume = uninterrupted
# ---------------------------------------------------------------------------------------------

def straight_and_interrupted(cfg, tmp_path):
    """Run ``a`` straight through; run ``b`` until an interrupt after iteration 5."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg, a)

    def stop(n):
        if n == 5:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(cfg, b, on_iteration=stop)
    return a, b


@pytest.mark.parametrize("rule", ["diffusion", "bptt"])
def test_resume_equals_uninterrupted(rule, tmp_path):
    cfg = tiny(**{"rule.name": rule})
    a, b = straight_and_interrupted(cfg, tmp_path)
    # iteration 5 ran and was logged, but the checkpoint holds iteration 4
    assert final_state(cfg, b)[2] == 4
    assert max(r["iteration"] for r in trainer.read_metrics(b)) == 5
    assert not (b / "summary.json").exists()

    summary = train(cfg, b, resume=True)
    assert summary["iteration"] == 6
    sa, sb = final_state(cfg, a), final_state(cfg, b)
    assert sa[2] == 6
    assert_same_state(sa, sb)
    # training changed the weights (otherwise the comparison would prove little)
    init = setup(cfg).net.params
    assert not torch.equal(sa[0].w_rec, init.w_rec) and not torch.equal(sa[0].w_out, init.w_out)

    rows_a, rows_b = trainer.read_metrics(a), trainer.read_metrics(b)
    assert_no_duplicate_rows(rows_b)
    assert rows_b == rows_a
    assert json.loads((b / "summary.json").read_text())["final"] == \
        json.loads((a / "summary.json").read_text())["final"]


def test_resume_after_a_torn_metrics_line(tmp_path):
    """A kill in the middle of writing metrics.jsonl leaves a partial last line; resuming must
    still work and end with the rows of an uninterrupted run."""
    cfg = tiny()
    a, b = straight_and_interrupted(cfg, tmp_path)
    with open(b / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 6, "split": "tr')
    train(cfg, b, resume=True)
    assert trainer.read_metrics(b) == trainer.read_metrics(a)
    assert_same_state(final_state(cfg, a), final_state(cfg, b))


def test_last_iteration_checkpointed_and_resume_refuses_a_different_config(tmp_path):
    cfg = tiny(**{"train.iterations": 3})        # checkpoint_every = 2: at 2, and at the end
    train(cfg, tmp_path)
    assert _checkpoint_iteration(tmp_path / CHECKPOINT) == 3
    with pytest.raises(C.ConfigError, match="--resume"):
        train(tiny(**{"train.iterations": 3, "train.lr": 0.01}), tmp_path, resume=True)


def _checkpoint_iteration(path: Path):
    """The iteration stored in a safetensors checkpoint header, or None if unreadable."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            return int(json.loads(f.read(n))["__metadata__"]["iteration"])
    except (OSError, ValueError, KeyError):
        return None


def test_resume_after_sigkill(tmp_path):
    """Kill the CLI with SIGKILL mid-run, resume from its checkpoint: same end state."""
    data = json.loads(json.dumps(TINY))
    data["train"].update(iterations=60, checkpoint_every=1, eval_every=20)
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(tomli_w.dumps(data))
    cfg = C.load(cfg_path)
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lava_diffmod.cli", "train", "--config",
                                 str(cfg_path), "--out", str(killed), "--no-progress"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                it = _checkpoint_iteration(killed / CHECKPOINT)
                if it is not None and it >= 2:
                    break
                time.sleep(0.005)
            still_running = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert still_running, "the run ended before it could be killed: " + \
        (tmp_path / "stderr.txt").read_text()[-2000:]
    assert proc.returncode == -signal.SIGKILL
    done = _checkpoint_iteration(killed / CHECKPOINT)
    assert 2 <= done < 60
    assert not (killed / "summary.json").exists()

    assert cli.main(["train", "--resume", "--out", str(killed), "--no-progress"]) == 0
    straight = tmp_path / "straight"
    train(cfg, straight)
    assert_same_state(final_state(cfg, straight), final_state(cfg, killed))
    rows = trainer.read_metrics(killed)
    assert_no_duplicate_rows(rows)
    assert rows == trainer.read_metrics(straight)


# ---------------------------------------------------------------------------------------------
# micro-batching
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["diffusion", "eprop", "bptt"])
def test_micro_batches_equal_one_batch(rule):
    one = setup(tiny(**{"rule.name": rule, "train.micro_batches": 1}))
    four = setup(tiny(**{"rule.name": rule, "train.micro_batches": 4}))
    g1, s1 = trainer.iteration_gradients(one, one.net, 3)
    g4, s4 = trainer.iteration_gradients(four, four.net, 3)
    for name, a, b in zip(Params._fields, g1, g4):
        assert a.abs().max() > 0, f"{name}: zero gradient, the comparison would be empty"
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14 * float(a.abs().max()), msg=name)
    for key in s1:
        torch.testing.assert_close(s4[key], s1[key], rtol=1e-12, atol=1e-15, msg=key)
    # and it is not the gradient of the first micro-batch alone
    first = trainer.train_batch(four, 3, 0)
    from lava_diffmod.rules import gradients
    g_first = gradients(four.rule, four.net, first.x, first.target, first.keys).grads
    assert not torch.allclose(g_first.w_rec, g1.w_rec, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    exp = setup(tiny())
    params = exp.net.params
    state = exp.optimizer.init(params)
    _, state = exp.optimizer.update(Params(*(torch.ones_like(p) for p in params)), state, params)
    path = tmp_path / CHECKPOINT
    checkpoint.save(path, params, state, 1, {"seeds": [1]})
    return exp, params, state, path


def test_checkpoint_round_trip(saved):
    exp, params, state, path = saved
    p, s, it, meta = checkpoint.load(path, params)
    assert it == 1 and meta == {"seeds": [1]} and s.step == state.step == 1
    assert_params_equal(p, params)
    assert_params_equal(s.m, state.m)
    assert_params_equal(s.v, state.v)


def test_checkpoint_write_is_atomic(saved, monkeypatch):
    exp, params, state, path = saved
    before = path.read_bytes()
    calls = []

    def failing_replace(src, dst):
        calls.append((Path(src), Path(dst)))
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    newer = Params(*(p + 1 for p in params))
    with pytest.raises(OSError, match="disk gone"):
        checkpoint.save(path, newer, state, 2)
    # it wrote a temporary file next to the checkpoint and tried to rename it over
    assert len(calls) == 1
    src, dst = calls[0]
    assert dst == path and src != path and src.parent == path.parent
    assert path.read_bytes() == before
    p, _, it, _ = checkpoint.load(path, params)
    assert it == 1
    assert_params_equal(p, params)

    monkeypatch.undo()
    checkpoint.save(path, newer, state, 2)
    p, _, it, _ = checkpoint.load(path, params)
    assert it == 2
    assert_params_equal(p, newer)


@pytest.mark.parametrize("keep", [0, 5, 8, 100, "half", "all_but_one"])
def test_truncated_checkpoint(saved, keep):
    exp, params, state, path = saved
    data = path.read_bytes()
    n = {"half": len(data) // 2, "all_but_one": len(data) - 1}.get(keep, keep)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, params)
    msg = str(info.value)
    assert str(path) in msg and "truncated" in msg and "\n" not in msg


def test_garbage_checkpoint(saved):
    exp, params, state, path = saved
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        checkpoint.load(path, params)


def test_missing_checkpoint(tmp_path):
    like = setup(tiny()).net.params
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / CHECKPOINT, like)


def test_checkpoint_with_wrong_shapes(saved):
    exp, params, state, path = saved
    bigger = setup(tiny(**{"neuron.n_alif": 12, "network.grid_w": 5})).net.params
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, bigger)
    msg = str(info.value)
    assert "shape" in msg and "params.w_in" in msg and "(1, 40, 16)" in msg and "(1, 40, 20)" in msg
    two_seeds = setup(tiny(**{"train.seeds": [1, 2]})).net.params
    with pytest.raises(CheckpointError, match="shape"):
        checkpoint.load(path, two_seeds)


def test_resume_from_truncated_checkpoint_fails_cleanly(tmp_path, capsys):
    cfg = tiny(**{"train.iterations": 2})
    train(cfg, tmp_path)
    ck = tmp_path / CHECKPOINT
    ck.write_bytes(ck.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        train(cfg, tmp_path, resume=True)
    assert cli.main(["train", "--resume", "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("lava-diffmod: error: checkpoint")


# ---------------------------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["gradient", "loss"])
def test_nan_stops_training(what, tmp_path, monkeypatch):
    real = trainer.iteration_gradients

    def poisoned(exp, net, n):
        grads, stats = real(exp, net, n)
        if n == 3:
            if what == "gradient":
                grads = Params(*(g * math.nan for g in grads))
            else:
                stats = dict(stats, loss=stats["loss"] + math.inf)
        return grads, stats

    monkeypatch.setattr(trainer, "iteration_gradients", poisoned)
    cfg = tiny()
    with pytest.raises(TrainingDiverged) as info:
        train(cfg, tmp_path)
    msg = str(info.value)
    assert "iteration 3" in msg and str(tmp_path / CHECKPOINT) in msg and "\n" not in msg
    params, _, it = final_state(cfg, tmp_path)
    assert it == 2
    assert all(bool(torch.isfinite(p).all()) for p in params)
    assert max(r["iteration"] for r in trainer.read_metrics(tmp_path)) == 2


# ---------------------------------------------------------------------------------------------
# the run directory, and seeds trained together
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_seed_run(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = tiny(**{"train.seeds": [1, 2]})
    run = tmp_path_factory.mktemp("two_seeds")
    summary = train(cfg, run)
    return cfg, run, summary


def test_run_directory(two_seed_run):
    cfg, run, summary = two_seed_run
    assert C.load(run / "config.toml") == cfg
    rows = trainer.read_metrics(run)
    assert_no_duplicate_rows(rows)
    evals = [r for r in rows if r["split"] == "eval"]
    trains = [r for r in rows if r["split"] == "train"]
    assert sorted({r["iteration"] for r in evals}) == [1, 3, 5, 6]
    assert sorted({r["iteration"] for r in trains}) == [1, 2, 3, 4, 5, 6]
    assert len(evals) == 4 * 2 and len(trains) == 6 * 2
    for r in evals:
        assert {"accuracy", "ce", "rate_hz"} <= set(r) and 0 <= r["accuracy"] <= 1 and r["ce"] > 0
        assert r["accuracy"] * 16 == round(r["accuracy"] * 16)     # 16 evaluation trials
    for r in trains:
        assert {"loss", "task_loss", "reg_loss", "accuracy"} <= set(r)
        assert r["loss"] == pytest.approx(r["task_loss"] + r["reg_loss"], rel=1e-12)

    assert _checkpoint_iteration(run / CHECKPOINT) == 6
    for name in ("learning_curves.png", "spike_raster.png", "modulator_field.png"):
        data = (run / "figures" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, name

    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["iteration"] == 6 and on_disk["seeds"] == [1, 2]
    assert (on_disk["task"], on_disk["rule"], on_disk["k"]) == ("cue_accumulation", "diffusion", 0.75)
    last = {r["seed"]: r for r in evals if r["iteration"] == 6}
    for key in ("accuracy", "ce", "rate_hz"):
        per_seed = on_disk["final"][key]["per_seed"]
        assert per_seed == [last[1][key], last[2][key]]
        assert on_disk["final"][key]["mean"] == pytest.approx(sum(per_seed) / 2, rel=1e-12)
    # the recorded final metrics are those of the saved weights
    exp = setup(cfg)
    params, _, _ = final_state(cfg, run)
    metrics = trainer.evaluate(exp, exp.net.with_params(params))
    for key in ("accuracy", "ce"):
        assert metrics[key].tolist() == pytest.approx(on_disk["final"][key]["per_seed"], rel=1e-12)


def test_eval_iterations():
    assert trainer.eval_iterations(6, 2) == {1, 3, 5, 6}
    assert trainer.eval_iterations(2000, 25) == set(range(1, 2000, 25)) | {2000}
    assert max(trainer.eval_iterations(2000, 25) - {2000}) == 1976


def test_seeds_batched_equal_seeds_alone(two_seed_run, tmp_path):
    cfg, run, _ = two_seed_run
    together, _, _ = final_state(cfg, run)
    rows = trainer.read_metrics(run)
    for i, seed in enumerate([1, 2]):
        alone_cfg = tiny(**{"train.seeds": [seed]})
        train(alone_cfg, tmp_path / str(seed))
        alone, _, _ = final_state(alone_cfg, tmp_path / str(seed))
        for name, a, b in zip(Params._fields, together, alone):
            torch.testing.assert_close(a[i:i + 1], b, rtol=0, atol=1e-10, msg=f"seed {seed} {name}")
        rows_alone = trainer.read_metrics(tmp_path / str(seed))
        mine = [r for r in rows if r["seed"] == seed]
        assert len(mine) == len(rows_alone)
        for r, q in zip(mine, rows_alone):
            assert (r["iteration"], r["split"]) == (q["iteration"], q["split"])
            for key in r:
                if key not in ("iteration", "split", "seed"):
                    assert r[key] == pytest.approx(q[key], rel=1e-9, abs=1e-12), key
    assert not torch.equal(together.w_rec[0], together.w_rec[1])


# ---------------------------------------------------------------------------------------------
# optimisers
# ---------------------------------------------------------------------------------------------

def _toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(2, 3, 4), (2, 4, 4), (2, 4, 2)]
    theta = Params(*(torch.randn(s, generator=g, dtype=torch.float64) for s in shapes))
    curv = [torch.rand(s, generator=g, dtype=torch.float64) * 5 + 0.1 for s in shapes]
    centre = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]

    def grad(p):   # gradient of sum(0.5 * a * (p - c)^2)
        return Params(*(a * (x - c) for a, x, c in zip(curv, p, centre)))
    return theta, grad


@pytest.mark.parametrize("lr, b1, b2, eps", [(0.05, 0.9, 0.999, 1e-8), (0.3, 0.8, 0.99, 1e-2)])
def test_adam_matches_torch(lr, b1, b2, eps):
    theta, grad = _toy()
    opt = optim.adam(lr, b1, b2, eps, "pytorch")
    state = opt.init(theta)
    ref = [p.clone().requires_grad_(True) for p in theta]
    torch_opt = torch.optim.Adam(ref, lr=lr, betas=(b1, b2), eps=eps)
    params = theta
    for _ in range(12):
        g = grad(params)
        params, state = opt.update(g, state, params)
        for r, gr in zip(ref, grad(Params(*(r.detach() for r in ref)))):
            r.grad = gr.clone()
        torch_opt.step()
        for mine, theirs in zip(params, ref):
            torch.testing.assert_close(mine, theirs.detach(), rtol=1e-12, atol=1e-14)
    assert state.step == 12
    assert not torch.allclose(params.w_in, theta.w_in)


def test_adam_tf1_eps_mode_matches_formula():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-2
    theta, grad = _toy(1)
    opt = optim.adam(lr, b1, b2, eps, "tf1")
    state = opt.init(theta)
    params = theta
    # the TF1 update, written out: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), θ -= lr_t m / (sqrt(v) + ε)
    hand = [p.clone() for p in theta]
    m = [torch.zeros_like(p) for p in theta]
    v = [torch.zeros_like(p) for p in theta]
    for t in range(1, 11):
        g_hand = grad(Params(*hand))
        for i in range(3):
            m[i] = b1 * m[i] + (1 - b1) * g_hand[i]
            v[i] = b2 * v[i] + (1 - b2) * g_hand[i] ** 2
            lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            hand[i] = hand[i] - lr_t * m[i] / (torch.sqrt(v[i]) + eps)
        params, state = opt.update(grad(params), state, params)
        for mine, theirs in zip(params, hand):
            torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-14)
    # with this large ε the two placements really differ
    pt = optim.adam(lr, b1, b2, eps, "pytorch")
    p_pt, s_pt = theta, pt.init(theta)
    for _ in range(10):
        p_pt, s_pt = pt.update(grad(p_pt), s_pt, p_pt)
    assert (p_pt.w_in - params.w_in).abs().max() > 1e-4


def test_sgd():
    theta, grad = _toy(2)
    opt = optim.sgd(0.25)
    state = opt.init(theta)
    g = grad(theta)
    new, state = opt.update(g, state, theta)
    for n, p, gi in zip(new, theta, g):
        assert torch.equal(n, p - 0.25 * gi)
    assert state.step == 1 and state.m is None and state.v is None


def test_optimizer_from_config():
    theta, grad = _toy(3)
    g = grad(theta)
    sgd = optim.from_config(C.TrainConfig(optimizer="sgd", lr=0.5))
    new, _ = sgd.update(g, sgd.init(theta), theta)
    assert torch.equal(new.w_rec, theta.w_rec - 0.5 * g.w_rec)
    for mode in ("pytorch", "tf1"):
        a = optim.from_config(C.TrainConfig(lr=0.2, adam_eps_mode=mode, eps=0.05, beta1=0.8, beta2=0.9))
        b = optim.adam(0.2, 0.8, 0.9, 0.05, mode)
        pa, sa = theta, a.init(theta)
        pb, sb = theta, b.init(theta)
        for _ in range(3):
            pa, sa = a.update(grad(pa), sa, pa)
            pb, sb = b.update(grad(pb), sb, pb)
        assert_params_equal(pa, pb)
