r"""Training protocol of the released ModProp run (RULES.md A.8) for the rate RNN, seeds batched.

Adam (PyTorch ε placement), lr_k = lr · decay^⌊k / every⌋ (5e-4 · 0.8^⌊k/300⌋), loss
CE + l2 · ½Σw² (l2 = 5e-4) on a fresh batch of 32 trials per iteration, then the rewiring L1
shrinkage (:func:`lava_diffmod.float.rate.rewire`). Validation every 20 iterations on a fresh
batch (split "eval", counter = iteration). Seeds are independent networks on the leading axis
(Adam is elementwise, the losses are summed over seeds), so S seeds train in one program.

With ``checkpoint`` a run writes its whole state (weights, Adam moments, logs, iteration) every
``checkpoint_every`` iterations, atomically, and a run started on an existing checkpoint resumes
from it: the batches are functions of (seed, iteration), so the resumed run is the uninterrupted
one bit for bit.

Reported quantities (A.8 plot protocol, A.11.6 acceptance) come from the validation logs:
the final loss is the mean of the last 10 logs; the moving average is the trailing mean of 15
logs (defined from the 15th log on), and its first crossing below 0.1 is reported as the
iteration of the newest log in the window.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from ..float.rate import RateNetwork, RateParams, effective, rewire
from ..rules.modprop import RateRule, rate_gradients, rate_loss
from .checkpoint import CheckpointError, atomic_write


@dataclass(frozen=True)
class RateTrainConfig:
    iterations: int = 3000
    batch: int = 32
    lr: float = 5e-4
    lr_decay: float = 0.8
    lr_decay_every: int = 300
    l2: float = 5e-4
    eval_every: int = 20
    smooth: int = 15            # moving-average window, in validation logs
    final_logs: int = 10        # logs averaged for the final loss / accuracy

    def __post_init__(self):
        for name in ("iterations", "batch", "lr_decay_every", "eval_every", "smooth", "final_logs"):
            if getattr(self, name) < 1:
                raise ValueError(f"rate_train.{name} = {getattr(self, name)}: must be >= 1")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.l2 < 0:
            raise ValueError(f"rate_train: lr = {self.lr} must be > 0, lr_decay = {self.lr_decay} in (0, 1], "
                             f"l2 = {self.l2} >= 0")


class RateHistory(NamedTuple):
    """Logs per seed: train CE (iterations, S); validation iterations (L,), CE and accuracy (L, S);
    the number of iterations where the ρ(A) guard lowered μ, per seed (S,); the iteration a
    checkpoint resumed from (0: a fresh start)."""
    train_loss: torch.Tensor
    eval_iters: torch.Tensor
    eval_loss: torch.Tensor
    eval_acc: torch.Tensor
    mu_clipped: torch.Tensor
    net: RateNetwork
    resumed_from: int = 0


def evaluate(net: RateNetwork, task, seeds: list[int], counter: int, trials: int):
    """Validation CE and accuracy (S,) on a fresh batch, without a graph."""
    batch = task.batch(seeds, "eval", counter, range(trials), net.params.w_in.device, net.params.w_in.dtype)
    with torch.no_grad():
        ce, acc, _ = rate_loss(effective(net), batch.x, batch.target, net.alpha, net.cfg.theta, net.types,
                               RateRule("bptt"))
    return ce, acc


def train_rate(net: RateNetwork, task, rule: RateRule, seeds: list[int],
               cfg: RateTrainConfig = RateTrainConfig(), progress: bool = True,
               checkpoint: Path | None = None, checkpoint_every: int = 100) -> RateHistory:
    """Train S = len(seeds) networks on ``task`` with ``rule`` under the A.8 protocol (resumable
    from ``checkpoint``, see the module docstring)."""
    from tqdm import tqdm

    if len(seeds) != net.params.w_in.shape[0]:
        raise ValueError(f"seeds: {len(seeds)} given for {net.params.w_in.shape[0]} networks")
    device, dtype = net.params.w_in.device, net.params.w_in.dtype
    leaves = [p.detach().clone() for p in net.params]
    opt = torch.optim.Adam(leaves, lr=cfg.lr)
    nominal_mu = torch.full((len(seeds),), rule.mu, dtype=torch.float64)
    train, it_log, ev_loss, ev_acc = [], [], [], []
    clipped = torch.zeros(len(seeds), dtype=torch.long)
    # what a checkpoint must agree on to be resumed (everything but the iteration count)
    ident = {"rule": repr(rule), "seeds": list(seeds), "cfg": {k: v for k, v in asdict(cfg).items() if k != "iterations"},
             "task": repr(task), "net": repr(net.cfg)}
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, weights_only=True)
        if state["ident"] != ident:
            raise CheckpointError(f"{checkpoint}: written by another run (rule, seeds, protocol, task or "
                                  f"network differ); remove it or choose another path")
        start, train, it_log, ev_loss, ev_acc, clipped = (state[k] for k in ("iteration", "train", "it_log",
                                                                              "ev_loss", "ev_acc", "clipped"))
        with torch.no_grad():
            for leaf, p in zip(leaves, state["params"]):
                leaf.copy_(p)
        opt.load_state_dict(state["adam"])
        net = net.with_params(RateParams(*(p.detach().clone() for p in leaves)))
    bar = tqdm(range(start, cfg.iterations), disable=not progress, desc=rule.name, mininterval=5.0,
               initial=start, total=cfg.iterations)
    for k in bar:
        lr = cfg.lr * cfg.lr_decay ** (k // cfg.lr_decay_every)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = task.batch(seeds, "train", k, range(cfg.batch), device, dtype)
        grads, ce, _, mu = rate_gradients(net, batch.x, batch.target, rule, cfg.l2)
        if rule.name == "modprop":
            clipped += (mu.double().cpu() < nominal_mu).long()
        for leaf, g in zip(leaves, grads):
            leaf.grad = g
        opt.step()
        net = rewire(net.with_params(RateParams(*(p.detach().clone() for p in leaves))), lr)
        with torch.no_grad():
            for leaf, p in zip(leaves, net.params):
                leaf.copy_(p)
        train.append(ce)
        if (k + 1) % cfg.eval_every == 0:
            v_ce, v_acc = evaluate(net, task, seeds, k, cfg.batch)
            it_log.append(k + 1)
            ev_loss.append(v_ce)
            ev_acc.append(v_acc)
            bar.set_postfix(val_ce=f"{float(v_ce.mean()):.3f}", val_acc=f"{float(v_acc.mean()):.2f}")
        if checkpoint is not None and ((k + 1) % checkpoint_every == 0 or k + 1 == cfg.iterations):
            state = {"ident": ident, "iteration": k + 1, "train": train, "it_log": it_log, "ev_loss": ev_loss,
                     "ev_acc": ev_acc, "clipped": clipped, "params": [p.detach().cpu() for p in leaves],
                     "adam": opt.state_dict()}
            atomic_write(Path(checkpoint), lambda p: torch.save(state, p))
    return RateHistory(torch.stack(train), torch.tensor(it_log), torch.stack(ev_loss),
                       torch.stack(ev_acc), clipped, net, start)


def summary(h: RateHistory, cfg: RateTrainConfig = RateTrainConfig(), threshold: float = 0.1) -> dict:
    """Per-seed final CE and accuracy (last ``final_logs`` logs), whether every one of those logs
    is at 100 % accuracy, and the first iteration where the ``smooth``-log moving average of the
    validation CE is below ``threshold`` (None if never)."""
    loss, acc, iters = h.eval_loss.double(), h.eval_acc.double(), h.eval_iters
    last = slice(-cfg.final_logs, None)
    ma = loss.unfold(0, cfg.smooth, 1).mean(-1) if loss.shape[0] >= cfg.smooth else loss[:0]
    crossing = []
    for s in range(loss.shape[1]):
        below = (ma[:, s] < threshold).nonzero()
        crossing.append(int(iters[cfg.smooth - 1 + int(below[0])]) if len(below) else None)
    return {"final_loss": loss[last].mean(0).tolist(), "final_acc": acc[last].mean(0).tolist(),
            "all_correct_last_logs": (acc[last] == 1).all(0).tolist(), "first_ma_below": crossing,
            "mu_clipped_iterations": h.mu_clipped.tolist()}
