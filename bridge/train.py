"""One training loop that does not know which rule it runs, and the results folder it writes.

The loop is the plainest torch loop — ``zero_grad(); loss(model(x), y).backward(); opt.step()``
(:func:`training_step`) — because every rule does its work inside the network's forward and
backward (:mod:`bridge.engines`).  The same step serves ``credit train``, the bench and the checks.

``run_experiment(config)`` resolves a :class:`TrainConfig` against its task's defaults, builds the
data, the network, the loss and the optimizer, trains, and writes::

    OUT/config.json      the resolved configuration
    OUT/metrics.jsonl    one JSON line per evaluation
    OUT/summary.json     rule, task, seed, status and the final metrics
    OUT/figures/*.png    loss and angle curves
    OUT/checkpoint.pt    model, optimizer, scheduler, RNG states, epoch and history — written
                         atomically after every epoch; ``resume=True`` continues from it

A run whose loss turns non-finite, or grows far above its start, stops with ``status: diverged``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from plasticity import get_loss, make_rule
from plasticity._validate import check_choice, check_range, check_sizes

from .losses import TeachingLoss
from .metrics import feedback_alignment, nse, signal_angles
from .network import FeedbackMLP, feedback_layers
from .tasks import TASKS


@dataclass
class TrainConfig:
    """Everything one training run needs; ``None`` means "the task's default"."""

    task: str = "digits"
    rule: str = "bp"
    sizes: tuple | None = None
    activation: str | None = None
    output_activation: str | None = None
    loss: str | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_min: float = 0.0
    lr_step: int = 1
    lr_gamma: float = 0.5
    weight_scale: float | None = None
    feedback_scale: float | None = None
    sparsity: float = 0.0
    feedback_sparsity: float = 0.0
    bias: bool | None = None
    # rule and loss parameters
    epsilon: float | None = None
    alpha: float | None = None
    mu: float | None = None
    rule_params: dict = field(default_factory=dict)
    # data
    data_dir: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    # bookkeeping
    evals_per_epoch: int = 1
    probe_size: int = 256
    dtype: str = "float32"
    device: str = "cpu"
    out: str | None = None
    quiet: bool = False

    def resolved(self) -> "TrainConfig":
        """A copy with task defaults filled in and every value validated."""
        t = TASKS[check_choice("task", self.task, TASKS)]
        c = dataclasses.replace(self)
        for name in ("sizes", "activation", "output_activation", "loss", "epochs", "lr", "batch_size",
                     "weight_scale", "feedback_scale", "bias"):
            if getattr(c, name) is None:
                setattr(c, name, getattr(t, name))
        c.sizes = check_sizes(c.sizes)
        c.epochs = _int("epochs", c.epochs, 0)
        c.batch_size = _int("batch_size", c.batch_size, 1)
        c.seed = _int("seed", c.seed, 0, 2**63 - 1)
        c.evals_per_epoch = _int("evals_per_epoch", c.evals_per_epoch, 1)
        c.probe_size = _int("probe_size", c.probe_size, 1)
        c.lr_step = _int("lr_step", c.lr_step, 1)
        for name in ("n_train", "n_test"):
            if getattr(c, name) is not None:
                setattr(c, name, _int(name, getattr(c, name), 1))
        for name in ("task", "rule", "activation", "output_activation", "loss", "optimizer", "lr_schedule", "dtype",
                     "device"):
            if not isinstance(getattr(c, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(c, name)!r}")
        for name in ("bias", "quiet"):
            if not isinstance(getattr(c, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(c, name)!r}")
        if not isinstance(c.rule_params, dict):
            raise ValueError(f"rule_params must be a table of KEY = VALUE, got {c.rule_params!r}")
        make_rule(c.rule, **self.rule_kwargs())  # validates rule name and parameters
        if c.mu is not None and c.loss != "hinge":
            raise ValueError(f"mu is the hinge loss's parameter; loss is {c.loss!r}")
        get_loss(c.loss, **({"mu": c.mu} if c.mu is not None else {}))
        c.lr = check_range("lr", c.lr, 0.0, None, lo_open=True)
        check_range("momentum", c.momentum, 0.0, 1.0, hi_open=True)
        check_range("weight_decay", c.weight_decay, 0.0, None)
        check_range("sparsity", c.sparsity, 0.0, 1.0, hi_open=True)
        check_range("feedback_sparsity", c.feedback_sparsity, 0.0, 1.0, hi_open=True)
        check_range("lr_min", c.lr_min, 0.0, None)
        check_range("lr_gamma", c.lr_gamma, 0.0, 1.0, lo_open=True)
        for name in ("weight_scale", "feedback_scale"):
            if getattr(c, name) is not None:
                setattr(c, name, check_range(name, getattr(c, name), 0.0, None, lo_open=True))
        check_choice("optimizer", c.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", c.lr_schedule, SCHEDULES)
        check_choice("dtype", c.dtype, {"float32", "float64"})
        if c.optimizer == "adam" and c.momentum:
            raise ValueError("momentum applies to --optimizer sgd; adam has its own moments")
        return c

    def rule_kwargs(self) -> dict:
        """The rule's parameters: ``rule_params`` plus ``epsilon``/``alpha`` when given (an option the rule
        does not have is an error naming the valid ones)."""
        kw = {k: v for k, v in (("epsilon", self.epsilon), ("alpha", self.alpha)) if v is not None}
        return {**kw, **self.rule_params}

    @classmethod
    def from_toml(cls, path, **overrides) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--config {path}: not a file")
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown config keys in {path}: {', '.join(sorted(unknown))}; valid: {', '.join(sorted(names))}")
        for k in ("out", "quiet"):  # file values apply unless a flag overrides them
            if k in raw and overrides.get(k) in (None, False):
                overrides.pop(k, None)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(raw.get("sizes"), str):
            from plasticity._validate import parse_sizes

            raw["sizes"] = parse_sizes(raw["sizes"])
        return cls(**raw)


OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")


def _int(name, v, lo, hi=None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        if not (isinstance(v, float) and v.is_integer()):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an integer in [{lo}, {'inf' if hi is None else hi}], got {v}")
    return v


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """``cfg.optimizer`` (sgd with momentum, or adam) over ``params`` with ``cfg.lr`` and weight decay."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """The per-step learning-rate schedule: constant, cosine to ``lr_min`` over the run, or ×``lr_gamma``
    every ``lr_step`` epochs (``None`` for constant)."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs * steps_per_epoch),
                                                          eta_min=cfg.lr_min)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step * steps_per_epoch, gamma=cfg.lr_gamma)
    return None


def build_model(cfg: TrainConfig, n_in: int, n_out: int) -> FeedbackMLP:
    sizes = tuple(cfg.sizes)
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise ValueError(f"sizes {'-'.join(map(str, sizes))} do not fit task {cfg.task!r}: "
                         f"it has {n_in} inputs and {n_out} outputs")
    g = torch.Generator().manual_seed(int(cfg.seed))
    return FeedbackMLP(
        sizes, make_rule(cfg.rule, **cfg.rule_kwargs()), activation=cfg.activation,
        output_activation=cfg.output_activation, bias=cfg.bias, weight_scale=cfg.weight_scale,
        feedback_scale=cfg.feedback_scale, sparsity=cfg.sparsity, feedback_sparsity=cfg.feedback_sparsity,
        generator=g, dtype=getattr(torch, cfg.dtype),
    ).to(cfg.device)


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


def train(model, data, loss: TeachingLoss, cfg: TrainConfig, *, optimizer=None, scheduler=None,
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
    t0, running = time.perf_counter() - state.seconds, []

    def record(epoch):
        row = {"epoch": epoch, "step": state.step, "seconds": time.perf_counter() - t0}
        row["train_loss"] = float(np.mean(running)) if running else (
            evaluate(model, loss, xtr, ytr)["loss"] if tensors else math.nan)
        if xte is not None:
            ev_test = evaluate(model, loss, xte, yte)
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


def _final(history, seconds) -> dict:
    last = history[-1]
    fin = {"train_loss": last["train_loss"], "test_loss": last.get("test_loss"), "seconds": seconds}
    for k in ("test_error", "test_nse", "angle_bp_deg", "angle_pbp_deg", "alignment_deg", "rel_dist",
              "sign_congruence"):
        if k in last:
            fin[k] = last[k]
    if "angle_bp_deg" in last:
        later = [r["angle_bp_deg"] for r in history[1:]] or [last["angle_bp_deg"]]
        cols = [np.asarray(c, dtype=float) for c in zip(*later)]
        fin["angle_bp_deg_mean"] = [float(np.nanmean(c)) if np.isfinite(c).any() else math.nan for c in cols]
    fin.setdefault("angle_bp_deg", [])
    return fin


CHECKPOINT = "checkpoint.pt"


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prepare_out(out: Path, resume: bool) -> None:
    """The results folder must be new or empty, or (resume) hold a checkpoint."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ValueError(f"--resume {out}: no {CHECKPOINT} there (nothing to resume)")
        return
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} already holds results; choose a new folder, or resume it with --resume {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {out}: the folder is not writable")


def run_experiment(cfg: TrainConfig, *, data=None, write: bool = True, resume: bool = False) -> dict:
    """Resolve, build, train and (if ``cfg.out``) write the results folder; returns the summary.

    With ``resume=True`` the run in ``cfg.out`` continues from its last checkpoint (its saved
    configuration must match ``cfg``) and ends exactly as an uninterrupted run would.
    """
    from .data import load_dataset

    cfg = cfg.resolved()
    out = Path(cfg.out) if (cfg.out and write) else None
    if resume and out is None:
        raise ValueError("resume needs the results folder (--out / --resume DIR)")
    if out is not None:
        _prepare_out(out, resume)
    if data is None:
        t = TASKS[cfg.task]
        kw = dict(t.data_kwargs)
        kw.update({k: v for k, v in (("n_train", cfg.n_train), ("n_test", cfg.n_test)) if v is not None})
        data = load_dataset(cfg.task, data_dir=cfg.data_dir, seed=cfg.seed, **kw)
    model = build_model(cfg, data.n_in, data.n_out)
    loss = TeachingLoss(cfg.loss, **({"mu": cfg.mu} if cfg.mu is not None else {}))
    steps_per_epoch = max(1, math.ceil(len(data.x_train) / cfg.batch_size))
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    state = TrainState()
    cfg_json = json.dumps(jsonable(dataclasses.asdict(cfg)), indent=2)
    if resume:
        ck = torch.load(out / CHECKPOINT, weights_only=False)
        saved = {k: v for k, v in ck["config"].items() if k not in ("quiet",)}
        mine = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("quiet",)}
        diff = sorted(k for k in mine if jsonable(mine[k]) != jsonable(saved.get(k)))
        if diff:
            raise ValueError(f"--resume {out}: the configuration differs from the saved run in {', '.join(diff)}")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        state = TrainState(**ck["state"])
    lines = None
    if out is not None:
        _atomic_text(out / "config.json", cfg_json)
        lines = open(out / "metrics.jsonl", "w")
        for row in state.history:
            lines.write(json.dumps(jsonable(row)) + "\n")
        lines.flush()

    def checkpoint(st, opt, sched):
        if out is None:
            return
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                      "scheduler": None if sched is None else sched.state_dict(),
                      "torch_rng": torch.get_rng_state(), "state": dataclasses.asdict(st),
                      "config": dataclasses.asdict(cfg)}, out / CHECKPOINT)

    def log(row):
        lines.write(json.dumps(jsonable(row)) + "\n")
        lines.flush()

    status, message = "finished", None
    if not resume:
        checkpoint(state, optimizer, scheduler)
    try:
        history = train(model, data, loss, cfg, optimizer=optimizer, scheduler=scheduler,
                        log=None if lines is None else log, state=state, on_epoch=checkpoint)
    except Diverged as e:
        status, message, history = "diverged", str(e), state.history
    except KeyboardInterrupt:
        if out is not None:
            print(f"interrupted at step {state.step}; {out} holds the checkpoint of epoch {state.epoch}: "
                  f"continue with  credit train --resume {out}", file=sys.stderr)
        raise
    finally:
        if lines is not None:
            lines.close()
    seconds = state.seconds
    summary = {"rule": cfg.rule, "task": cfg.task, "seed": cfg.seed, "sizes": list(cfg.sizes), "status": status,
               "final": _final(history, seconds)}
    if message is not None:
        summary["message"] = message
        summary["diverged_at_step"] = state.step
    if out is not None:
        _atomic_text(out / "summary.json", json.dumps(jsonable(summary), indent=2))
        from .plots import plot_history

        plot_history({cfg.rule: history}, out / "figures", title=f"{cfg.task}")
    summary["history"] = history
    summary["model"] = model
    return summary


def load_run(path) -> tuple[FeedbackMLP, TrainConfig]:
    """The trained model of a results folder (its last checkpoint) and its configuration."""
    path = Path(path)
    if not (path / CHECKPOINT).is_file():
        raise ValueError(f"load_run: {path} has no {CHECKPOINT}")
    ck = torch.load(path / CHECKPOINT, weights_only=False)
    cfg = TrainConfig(**{k: (tuple(v) if k == "sizes" else v) for k, v in ck["config"].items()})
    model = build_model(cfg, cfg.sizes[0], cfg.sizes[-1])
    model.load_state_dict(ck["model"])
    return model, cfg


def jsonable(obj):
    """``obj`` with numpy scalars made Python numbers and non-finite floats ``None`` (for JSON)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
