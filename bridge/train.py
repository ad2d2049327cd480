"""The training step and loop of the torch engine — rule-agnostic.

The loop is the plainest torch loop — ``zero_grad(); loss(model(x), y).backward(); opt.step()``
(:func:`training_step`) — because every rule does its work inside the network's forward and
backward (:mod:`bridge.engines`).  The same step serves ``credit train``, the bench and the checks.
:func:`train` adds batching, evaluation, metrics, checkpoint callbacks, data parallelism
(:mod:`bridge.distributed`) and divergence detection; the results folder and the configuration
are the application's (:mod:`bridge.app.runs`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .losses import TeachingLoss
from .metrics import feedback_alignment, nse, signal_angles
from .network import FeedbackMLP, feedback_layers

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")


def make_optimizer(cfg, params) -> torch.optim.Optimizer:
    """``cfg.optimizer`` (sgd with momentum, or adam) over ``params`` with ``cfg.lr`` and weight decay."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg, optimizer, steps_per_epoch: int):
    """The per-step learning-rate schedule: constant, cosine to ``lr_min`` over the run, or ×``lr_gamma``
    every ``lr_step`` epochs (``None`` for constant)."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs * steps_per_epoch),
                                                          eta_min=cfg.lr_min)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step * steps_per_epoch, gamma=cfg.lr_gamma)
    return None

def _tensor(a, dtype, device):
    t = torch.as_tensor(a, device=device)
    return t.to(dtype) if t.is_floating_point() else t


@torch.no_grad()
def evaluate(model, loss: TeachingLoss, x, y, chunk: int = 4096) -> dict:
    """Mean loss, and error rate (classification) or NSE (regression), on a data set."""
    total, wrong, outs = 0.0, 0, []
    for i in range(0, len(x), chunk):
        out = model(x[i : i + chunk])
        total += float(loss.per_example(out, y[i : i + chunk]).sum())
        if loss.loss.classification or y.ndim == 1:
            wrong += int((out.argmax(-1) != y[i : i + chunk]).sum())
        else:
            outs.append(out)
    res = {"loss": total / len(x)}
    if y.ndim == 1:
        res["error"] = wrong / len(x)
    else:
        res["nse"] = nse(torch.cat(outs), y)
    return res


class Diverged(RuntimeError):
    """Training stopped: the loss became non-finite or grew far above its start."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


#: a run has diverged once its test loss exceeds this multiple of the initial one
DIVERGENCE_FACTOR = 1e3


def training_step(model, loss, optimizer, x, y) -> torch.Tensor:
    """One step of the plainest torch loop — every rule's work happens inside ``backward()``."""
    optimizer.zero_grad(set_to_none=True)
    batch_loss = loss(model(x), y)
    batch_loss.backward()
    optimizer.step()
    return batch_loss.detach()


@dataclass
class TrainState:
    """Where a run stands at an epoch boundary: what a checkpoint restores besides the modules."""

    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    rng: dict | None = None  # numpy bit-generator state of the batch order
    seconds: float = 0.0


def _check_finite(name, t):
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf values")


def train(model, data, loss: TeachingLoss, cfg, *, optimizer=None, scheduler=None,
          log: Callable | None = None, state: TrainState | None = None,
          on_epoch: Callable | None = None, test=None) -> list[dict]:
    """Train ``model`` (any rule) with :func:`training_step`; returns the evaluation history.

    ``data``: a data set with ``x_train, y_train, x_test, y_test`` (batches drawn by ``cfg.batch_size``
    with ``cfg.seed``), or any iterable of ``(x, y)`` batches such as a ``DataLoader`` (one pass per
    epoch; evaluation on ``test=(x, y)`` if given).  ``optimizer``: any torch optimizer (default
    :func:`make_optimizer`), ``scheduler``: stepped once per step.  ``state`` resumes from a
    checkpoint; ``on_epoch(state)`` is called after every epoch (checkpointing).  Raises
    :class:`Diverged` when the loss becomes non-finite or the test loss exceeds
    ``DIVERGENCE_FACTOR`` × its initial value.
    """
    dtype, dev = getattr(torch, cfg.dtype), cfg.device
    tensors = hasattr(data, "x_train")
    if tensors:
        xtr, ytr = _tensor(data.x_train, dtype, dev), _tensor(data.y_train, dtype, dev)
        xte, yte = _tensor(data.x_test, dtype, dev), _tensor(data.y_test, dtype, dev)
        for name, t in (("training inputs", xtr), ("training targets", ytr), ("test inputs", xte),
                        ("test targets", yte)):
            _check_finite(name, t)
        if len(xtr) == 0 or len(xte) == 0:
            raise ValueError("the data set has no training or no test examples (--n-train/--n-test must be ≥ 1)")
        n = len(xtr)
        steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    else:
        xte, yte = (None, None) if test is None else (_tensor(test[0], dtype, dev), _tensor(test[1], dtype, dev))
        steps_per_epoch = len(data) if hasattr(data, "__len__") else None
    from .distributed import shard, wrap

    net = wrap(model, dev)  # DDP when a process group is up (bridge.distributed)
    if optimizer is None:
        optimizer = make_optimizer(cfg, model.parameters())
        if scheduler is None and steps_per_epoch is not None:
            scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    rng = np.random.default_rng(cfg.seed)
    state = TrainState() if state is None else state
    if state.rng is not None:
        rng.bit_generator.state = state.rng
    history = state.history
    eval_at = set()
    if steps_per_epoch:
        eval_at = {int(round(k * steps_per_epoch / cfg.evals_per_epoch)) for k in range(1, cfg.evals_per_epoch + 1)}
    px, py = (None, None) if xte is None else (xte[: cfg.probe_size], yte[: cfg.probe_size])
    chunk = 4096 if isinstance(model, FeedbackMLP) else 256  # convolutional activations are large
    t0, running = time.perf_counter() - state.seconds, []

    def record(epoch):
        row = {"epoch": epoch, "step": state.step, "seconds": time.perf_counter() - t0}
        row["train_loss"] = float(np.mean(running)) if running else (
            evaluate(model, loss, xtr, ytr, chunk=chunk)["loss"] if tensors else math.nan)
        if xte is not None:
            ev_test = evaluate(model, loss, xte, yte, chunk=chunk)
            row["test_loss"] = ev_test["loss"]
            if "error" in ev_test:
                row["test_error"] = ev_test["error"]
            if "nse" in ev_test:
                row["test_nse"] = ev_test["nse"]
            if len(feedback_layers(model)) > 1:
                row.update(signal_angles(model, px, py, loss.loss))
        row.update(feedback_alignment(model))
        history.append(row)
        if log is not None:
            log(row)
        running.clear()
        first = history[0].get("test_loss")
        last = row.get("test_loss")
        if last is not None and (not math.isfinite(last) or (first is not None and math.isfinite(first)
                                                               and last > DIVERGENCE_FACTOR * max(first, 1e-12))):
            raise Diverged(f"{cfg.rule} on {cfg.task}: test loss {last:.4g} at step {state.step} "
                           f"(initial {first:.4g}); lower --lr (now {cfg.lr:g})", state.step)

    if not history:
        record(0.0)
    total = cfg.epochs * steps_per_epoch if steps_per_epoch else None
    bar = _progress(total, quiet=cfg.quiet, desc=f"{cfg.rule}/{cfg.task}")
    bar.update(state.epoch * (steps_per_epoch or 0))
    model.train()
    try:
        for epoch in range(state.epoch, cfg.epochs):
            if tensors:
                order = torch.as_tensor(rng.permutation(n), device=dev)
                batches = (order[k * cfg.batch_size : (k + 1) * cfg.batch_size] for k in range(steps_per_epoch))
                batches = ((xtr[idx], ytr[idx]) for idx in batches)
            else:
                batches = ((_tensor(xb, dtype, dev), _tensor(yb, dtype, dev)) for xb, yb in data)
            k = -1
            for k, (xb, yb) in enumerate(batches):
                if not tensors:
                    _check_finite("a batch's inputs", xb)
                xb, yb = shard(xb, yb)
                value = float(training_step(net, loss, optimizer, xb, yb))
                if scheduler is not None:
                    scheduler.step()
                running.append(value)
                state.step += 1
                bar.update(1)
                if not math.isfinite(value):
                    raise Diverged(f"{cfg.rule} on {cfg.task}: loss became {value} at step {state.step}; "
                                   f"lower --lr (now {cfg.lr:g})", state.step)
                if (k + 1) in eval_at:
                    record(epoch + (k + 1) / steps_per_epoch)
                    bar.set_postfix(loss=f"{history[-1].get('test_loss', math.nan):.4g}")
            if not eval_at and k >= 0:
                record(float(epoch + 1))
            state.epoch = epoch + 1
            state.rng = rng.bit_generator.state
            state.seconds = time.perf_counter() - t0
            if on_epoch is not None:
                on_epoch(state, optimizer, scheduler)
    finally:
        bar.close()
    return history


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _progress(total, *, quiet, desc):
    if quiet:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)
