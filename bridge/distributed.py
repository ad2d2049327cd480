"""Data-parallel training with ``torch.distributed`` (DDP): ``torchrun --nproc-per-node N --no-python
credit train ...`` trains any rule on N processes.

Each process takes its equal share of every global batch (``batch_size`` must be divisible by the world
size, and so must every batch: choose ``n_train`` a multiple of ``batch_size``); DDP averages the
gradients — the feedback's too, since learned feedback is a parameter whose ``.grad`` the backward pass
sets — so the run equals one process on the same global batches.  Node perturbation draws the noise of
the whole global batch on every rank and keeps its own rows (:func:`bridge.engines.draw_normal`).
Rank 0 alone writes the results folder.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["distributed_from_env", "world", "wrap"]


def world() -> tuple[int, int]:
    """``(world_size, rank)``; ``(1, 0)`` outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


@contextlib.contextmanager
def distributed_from_env(cfg):
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU, nccl on
    CUDA, where each rank takes ``cuda:LOCAL_RANK``); yields this process's rank (0 when not launched
    by torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        yield world()[1]
        return
    if not torch.distributed.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = str(cfg.device).startswith("cuda")
    if cuda:
        cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(cfg.device)
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    try:
        yield torch.distributed.get_rank()
    finally:
        torch.distributed.destroy_process_group()


def wrap(model, device):
    """``model`` in ``DistributedDataParallel`` when a process group with more than one rank is up."""
    ws, _ = world()
    if ws <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index or 0] if str(device).startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def shard(x, y, what: str = "batch"):
    """This rank's equal share of a global batch."""
    ws, rank = world()
    if ws <= 1:
        return x, y
    n = x.shape[0]
    if n % ws:
        raise ValueError(f"a {what} of {n} examples cannot be split evenly over {ws} processes: choose batch_size "
                         f"and n_train as multiples of the world size")
    k = n // ws
    return x[rank * k : (rank + 1) * k], y[rank * k : (rank + 1) * k]
