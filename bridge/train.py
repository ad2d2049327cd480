"""One training loop that does not know which rule it runs, and the results folder it writes.

``run_experiment(config)`` resolves a :class:`TrainConfig` against its task's defaults, builds the
data, the network and the loss, trains, and writes::

    OUT/config.json      the resolved configuration
    OUT/metrics.jsonl    one JSON line per evaluation
    OUT/summary.json     rule, task, seed and the final metrics
    OUT/figures/*.png    loss and angle curves
    OUT/checkpoint.pt    the trained state_dict with its configuration
"""

from __future__ import annotations

import dataclasses
import json
import math
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
from .network import FeedbackMLP
from .tasks import TASKS

#: extra per-step work of rules that learn their feedback from activity (node perturbation,
#: recirculation): name → fn(model, x, target, loss) called after ``backward`` and before
#: ``optimizer.step``; it may set ``.grad`` of feedback parameters.
AFTER_BACKWARD: dict[str, Callable] = {}


def register_after_backward(rule_name: str):
    def deco(fn):
        AFTER_BACKWARD[rule_name] = fn
        return fn

    return deco


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
    momentum: float = 0.0
    weight_decay: float = 0.0
    weight_scale: float | None = None
    feedback_scale: float | None = None
    sparsity: float = 0.0
    feedback_sparsity: float = 0.0
    bias: bool | None = None
    # rule and loss parameters
    epsilon: float = 1.0
    alpha: float = 1e-3
    mu: float = 1.0
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
        make_rule(c.rule, **self.rule_kwargs())  # validates rule name and parameters
        get_loss(c.loss, **({"mu": c.mu} if c.loss == "hinge" else {}))
        check_range("epochs", c.epochs, 0, None)
        check_range("lr", c.lr, 0.0, None, lo_open=True)
        check_range("batch_size", c.batch_size, 1, None)
        check_range("sparsity", c.sparsity, 0.0, 1.0, hi_open=True)
        check_range("feedback_sparsity", c.feedback_sparsity, 0.0, 1.0, hi_open=True)
        check_choice("dtype", c.dtype, {"float32", "float64"})
        c.epochs, c.batch_size = int(c.epochs), int(c.batch_size)
        return c

    def rule_kwargs(self) -> dict:
        return {"epsilon": self.epsilon, "alpha": self.alpha, **self.rule_params}

    @classmethod
    def from_toml(cls, path, **overrides) -> "TrainConfig":
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown config keys in {path}: {', '.join(sorted(unknown))}; valid: {', '.join(sorted(names))}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(raw.get("sizes"), str):
            from plasticity._validate import parse_sizes

            raw["sizes"] = parse_sizes(raw["sizes"])
        return cls(**raw)


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


def train(model: FeedbackMLP, data, loss: TeachingLoss, cfg: TrainConfig, *, log: Callable | None = None) -> list[dict]:
    """Train ``model`` on ``data`` with plain minibatch SGD (any rule); returns the evaluation history.

    The loop is rule-agnostic: the rule acts through the layers' backward passes and, for
    rules that learn feedback from extra activity, through :data:`AFTER_BACKWARD`.
    """
    dtype, dev = getattr(torch, cfg.dtype), cfg.device
    xtr, ytr = _tensor(data.x_train, dtype, dev), _tensor(data.y_train, dtype, dev)
    xte, yte = _tensor(data.x_test, dtype, dev), _tensor(data.y_test, dtype, dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    from .registry import load_rules

    load_rules()  # rules with extra per-step work register their hooks on import
    after = AFTER_BACKWARD.get(model.rule.name)
    rng = np.random.default_rng(cfg.seed)
    n = len(xtr)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    eval_at = {int(round(k * steps_per_epoch / cfg.evals_per_epoch)) for k in range(1, cfg.evals_per_epoch + 1)}
    px, py = xte[: cfg.probe_size], yte[: cfg.probe_size]
    history, step, t0, running = [], 0, time.perf_counter(), []

    def record(epoch):
        ev_test = evaluate(model, loss, xte, yte)
        row = {"epoch": epoch, "step": step, "seconds": time.perf_counter() - t0,
               "train_loss": float(np.mean(running)) if running else evaluate(model, loss, xtr, ytr)["loss"],
               "test_loss": ev_test["loss"]}
        if "error" in ev_test:
            row["test_error"] = ev_test["error"]
        if "nse" in ev_test:
            row["test_nse"] = ev_test["nse"]
        if len(model.sizes) > 2:
            row.update(signal_angles(model, px, py, loss.loss))
        row.update(feedback_alignment(model))
        history.append(row)
        if log is not None:
            log(row)
        running.clear()

    record(0.0)
    bar = _progress(cfg.epochs * steps_per_epoch, quiet=cfg.quiet, desc=f"{cfg.rule}/{cfg.task}")
    for epoch in range(cfg.epochs):
        order = torch.as_tensor(rng.permutation(n), device=dev)
        for k in range(steps_per_epoch):
            idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            xb, yb = xtr[idx], ytr[idx]
            opt.zero_grad(set_to_none=True)
            batch_loss = loss(model(xb), yb)
            batch_loss.backward()
            if after is not None:
                after(model, xb, yb, loss)
            opt.step()
            running.append(float(batch_loss.detach()))
            step += 1
            bar.update(1)
            if not math.isfinite(running[-1]):
                bar.close()
                raise FloatingPointError(f"{cfg.rule} on {cfg.task}: loss became {running[-1]} at step {step}; "
                                         f"lower --lr (now {cfg.lr:g})")
            if (k + 1) in eval_at:
                record(epoch + (k + 1) / steps_per_epoch)
                bar.set_postfix(loss=f"{history[-1]['test_loss']:.4g}")
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
    fin = {"train_loss": last["train_loss"], "test_loss": last["test_loss"], "seconds": seconds}
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


def run_experiment(cfg: TrainConfig, *, data=None, write: bool = True) -> dict:
    """Resolve, build, train and (if ``cfg.out``) write the results folder; returns the summary."""
    from .data import load_dataset

    cfg = cfg.resolved()
    if data is None:
        t = TASKS[cfg.task]
        kw = dict(t.data_kwargs)
        kw.update({k: v for k, v in (("n_train", cfg.n_train), ("n_test", cfg.n_test)) if v is not None})
        data = load_dataset(cfg.task, data_dir=cfg.data_dir, seed=cfg.seed, **kw)
    model = build_model(cfg, data.n_in, data.n_out)
    loss = TeachingLoss(cfg.loss, **({"mu": cfg.mu} if cfg.loss == "hinge" else {}))
    out = Path(cfg.out) if (cfg.out and write) else None
    lines = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(jsonable(dataclasses.asdict(cfg)), indent=2))
        lines = open(out / "metrics.jsonl", "w")
    t0 = time.perf_counter()
    try:
        def log(row):
            lines.write(json.dumps(jsonable(row)) + "\n")
            lines.flush()

        history = train(model, data, loss, cfg, log=None if lines is None else log)
    finally:
        if lines is not None:
            lines.close()
    seconds = time.perf_counter() - t0
    summary = {"rule": cfg.rule, "task": cfg.task, "seed": cfg.seed, "sizes": list(cfg.sizes),
               "final": _final(history, seconds)}
    if out is not None:
        (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
        torch.save({"state_dict": model.state_dict(), "config": dataclasses.asdict(cfg)}, out / "checkpoint.pt")
        from .plots import plot_history

        plot_history({cfg.rule: history}, out / "figures", title=f"{cfg.task}")
    summary["history"] = history
    summary["model"] = model
    return summary


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
