r"""Data-parallel training over processes with torch.distributed (NCCL on GPUs, gloo on CPU).

A batch is already a sum of ``train.micro_batches`` micro-batches whose trials depend only on
(seed, iteration, trial index). With W processes, rank r computes micro-batches r, r + W, …,
and one all-reduce sums the gradients and loss terms:

.. math::

    g = \frac{1}{M} \sum_{r=0}^{W-1} \sum_{m \equiv r \ (\mathrm{mod}\ W)} g_m

so every rank holds the single-process gradient and takes the same optimiser step; the weights
stay identical on all ranks without broadcasting them. Rank 0 alone writes the run directory.

Start with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT::

    torchrun --nproc_per_node 4 -m lava_diffmod.cli train --config ... --device cuda --out runs/x
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

from ..config import Config, ConfigError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world`` processes."""
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def micro_batches(self, n: int) -> range:
        """The micro-batches of an n-micro-batch iteration that this rank computes."""
        return range(self.rank, n, self.world)

    def sum(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Σ over ranks of each tensor (one all-reduce per tensor); identity for one process."""
        if self.world == 1:
            return tensors
        out = [t.contiguous().clone() for t in tensors]
        for t in out:
            torch.distributed.all_reduce(t)
        return out


def from_environment(cfg: Config) -> tuple[Ranks, Config]:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE > 1), or
    run alone. On CUDA each rank takes the device LOCAL_RANK. Checks before any work."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), cfg
    n_micro = cfg.train.micro_batches
    if n_micro % world:
        raise ConfigError(f"train.micro_batches = {n_micro}: must be a multiple of the {world} processes "
                          f"(each process computes micro_batches / {world} of every batch)")
    if cfg.train.backend != "float" or cfg.rule.name == "dopamine":
        raise ConfigError(f"data-parallel training ({world} processes): float gradient rules only "
                          f"(train.backend = 'float', rule.name != 'dopamine')")
    cuda = cfg.train.device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=f"cuda:{local}"))
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size()), cfg


def finish() -> None:
    """Leave the process group, if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
