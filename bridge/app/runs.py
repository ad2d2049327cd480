"""Runs of the application: the training configuration (with its tasks' defaults), the results
folder, checkpoints and resume.

``run_experiment(config)`` resolves a :class:`TrainConfig` against its task's defaults, builds the
data, the network, the loss and the optimizer, trains with :func:`bridge.train.train`, and writes::

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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from plasticity import LOSSES, RULES, get_loss, make_rule
from plasticity._validate import check_choice, check_range, check_sizes

from ..archs import ARCHS, build_arch
from ..losses import TeachingLoss
from ..network import FeedbackMLP
from ..train import OPTIMIZERS, SCHEDULES, Diverged, TrainState, make_optimizer, make_scheduler, train
from .tasks import TASKS


def read_toml(path, prefix: str = "") -> dict:
    """The table in a TOML file; a missing file, a folder or a file that is not TOML is a one-line
    ``ValueError`` starting with ``prefix`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{prefix}{path}: not a file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{prefix}{path}: not a TOML file ({' '.join(str(e).split())})") from None
    except OSError as e:
        raise ValueError(f"{prefix}{path}: cannot read it ({e.strerror})") from None


#: ``weight_scale`` / ``feedback_scale`` value for the layers' own default init, U(±1/√d_in) per layer
#: (``nn.Linear``'s; what ``None`` means inside the library, where ``None`` in a config means the task's)
FAN_IN = "fan-in"


@dataclass
class TrainConfig:
    """Everything one training run needs; ``None`` means "the task's default"."""

    task: str = "digits"
    rule: str = "bp"
    sizes: tuple | None = None
    arch: str = "mlp"
    untied: bool = False
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
    weight_scale: float | str | None = None  # U(±s), or FAN_IN
    feedback_scale: float | str | None = None
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
        """A copy with task defaults filled in and every value validated (errors name the ``credit train``
        option, e.g. ``--batch-size``, which is also the TOML key ``batch_size``)."""
        c = dataclasses.replace(self)
        for name in ("task", "rule", "arch", "optimizer", "lr_schedule", "dtype", "device"):
            _str(name, getattr(c, name))
        for name in ("activation", "output_activation", "loss", "data_dir", "out"):
            _str(name, getattr(c, name), none=True)
        t = TASKS[check_choice("task", c.task, TASKS)]
        check_choice("arch", c.arch, ("mlp", *ARCHS))
        if not isinstance(c.untied, bool):
            raise ValueError(f"--untied must be true or false, got {c.untied!r}")
        if c.arch == "mlp":
            if c.untied:
                raise ValueError("--untied applies to the convolutional architectures (--arch amit-…/lansdell-cnn)")
        else:
            given = [opt(k) for k in ("sizes", "activation", "output_activation", "weight_scale", "bias")
                     if getattr(c, k) is not None]
            if given:
                raise ValueError(f"--arch {c.arch} is built as its paper defines it; {', '.join(given)} "
                                 f"appl{'y' if len(given) > 1 else 'ies'} to --arch mlp only")
            c.sizes = (t.sizes[0], t.sizes[-1])  # inputs and classes, for the record
        mlp_only = ("weight_scale", "feedback_scale") if c.arch != "mlp" else ()  # the arch's own init
        for name in ("sizes", "activation", "output_activation", "loss", "epochs", "lr", "batch_size",
                     "weight_scale", "feedback_scale", "bias"):
            if getattr(c, name) is None and name not in mlp_only:
                setattr(c, name, getattr(t, name))
        try:
            c.sizes = check_sizes(c.sizes)
        except ValueError as e:
            raise ValueError(f"--sizes: {e}") from None
        c.epochs = _int("epochs", c.epochs, 0)
        c.batch_size = _int("batch_size", c.batch_size, 1)
        c.seed = _int("seed", c.seed, 0, 2**63 - 1)
        c.evals_per_epoch = _int("evals_per_epoch", c.evals_per_epoch, 1, MAX_EVALS_PER_EPOCH)
        c.probe_size = _int("probe_size", c.probe_size, 1)
        c.lr_step = _int("lr_step", c.lr_step, 1)
        for name in ("n_train", "n_test"):
            if getattr(c, name) is not None:
                setattr(c, name, _int(name, getattr(c, name), 1))
        for name in ("bias", "quiet"):
            if not isinstance(getattr(c, name), bool):
                raise ValueError(f"{opt(name)} must be true or false, got {getattr(c, name)!r}")
        if not isinstance(c.rule_params, dict):
            raise ValueError(f"{opt('rule_params')} must be a table of KEY = VALUE, got {c.rule_params!r}")
        check_choice("rule", c.rule, RULES)
        try:
            make_rule(c.rule, **self.rule_kwargs())  # validates the rule's parameters
        except (ValueError, TypeError, OverflowError) as e:  # TypeError: a value of the wrong kind
            raise ValueError(f"--rule {c.rule}: {' '.join(str(e).split())}") from None
        check_choice("loss", c.loss, LOSSES)
        if t.regression and c.loss != "mse":
            raise ValueError(f"--loss {c.loss} needs class labels; task {c.task!r} is a regression with vector "
                             f"targets: use --loss mse")
        if c.mu is not None and c.loss != "hinge":
            raise ValueError(f"--mu is the hinge loss's parameter; loss is {c.loss!r} (--loss hinge)")
        try:
            get_loss(c.loss, **({"mu": c.mu} if c.mu is not None else {}))
        except ValueError as e:
            raise ValueError(f"--{'mu' if c.mu is not None else 'loss'}: {e}") from None
        inf = math.inf
        c.lr = _range("lr", c.lr, 0.0, inf, lo_open=True, hi_open=True)
        _range("momentum", c.momentum, 0.0, 1.0, hi_open=True)
        _range("weight_decay", c.weight_decay, 0.0, inf, hi_open=True)
        _range("sparsity", c.sparsity, 0.0, 1.0, hi_open=True)
        _range("feedback_sparsity", c.feedback_sparsity, 0.0, 1.0, hi_open=True)
        _range("lr_min", c.lr_min, 0.0, inf, hi_open=True)
        _range("lr_gamma", c.lr_gamma, 0.0, 1.0, lo_open=True)
        for name in ("weight_scale", "feedback_scale"):
            if isinstance(getattr(c, name), str) and getattr(c, name) != FAN_IN:
                raise ValueError(f'{opt(name)} must be a number or "{FAN_IN}" (the layers\' U(±1/√d_in)), '
                                 f"got {getattr(c, name)!r}")
        if c.weight_scale not in (None, FAN_IN):
            c.weight_scale = _range("weight_scale", c.weight_scale, 0.0, inf, lo_open=True, hi_open=True)
        if c.feedback_scale not in (None, FAN_IN):  # 0: zero feedback (Lillicrap Fig. 1's "shallow" control)
            c.feedback_scale = _range("feedback_scale", c.feedback_scale, 0.0, inf, hi_open=True)
        check_choice("optimizer", c.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", c.lr_schedule, SCHEDULES)
        check_choice("dtype", c.dtype, {"float32", "float64"})
        if c.optimizer == "adam" and c.momentum:
            raise ValueError("--momentum applies to --optimizer sgd; adam has its own moments")
        c.device = check_device(c.device)
        return c

    def rule_kwargs(self) -> dict:
        """The rule's parameters: ``rule_params`` plus ``epsilon``/``alpha`` when given (an option the rule
        does not have is an error naming the valid ones)."""
        kw = {k: v for k, v in (("epsilon", self.epsilon), ("alpha", self.alpha)) if v is not None}
        return {**kw, **self.rule_params}

    @classmethod
    def from_toml(cls, path, **overrides) -> "TrainConfig":
        path = Path(path)
        raw = read_toml(path, "--config ")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"--config {path}: unknown keys {', '.join(sorted(unknown))}; valid: {', '.join(sorted(names))}")
        for k in ("out", "quiet"):  # file values apply unless a flag overrides them
            if k in raw and overrides.get(k) in (None, False):
                overrides.pop(k, None)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(raw.get("sizes"), str):
            from plasticity._validate import parse_sizes

            try:
                raw["sizes"] = parse_sizes(raw["sizes"])
            except ValueError as e:
                raise ValueError(f"--sizes: {e}") from None
        return cls(**raw)


#: evaluations on the test set per epoch: more would only repeat evaluations of the same step
MAX_EVALS_PER_EPOCH = 10_000

#: the fields of :class:`TrainConfig` that ``credit train`` takes as options (the others only in --config)
CLI_FIELDS = {"task", "rule", "sizes", "arch", "untied", "activation", "output_activation", "loss", "epochs", "lr",
              "batch_size", "seed", "optimizer", "momentum", "weight_decay", "lr_schedule", "lr_min", "lr_step",
              "lr_gamma", "sparsity", "feedback_sparsity", "epsilon", "alpha", "mu", "data_dir", "n_train", "n_test",
              "evals_per_epoch", "dtype", "device", "out", "quiet"}


def opt(name: str) -> str:
    """How an error names a field: its ``credit train`` option, else its --config key."""
    if name == "rule_params":
        return "rule_params (--rule-param)"
    return "--" + name.replace("_", "-") if name in CLI_FIELDS else f"{name} (a --config key)"


def _int(name, v, lo, hi=None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        if not (isinstance(v, float) and v.is_integer()):
            raise ValueError(f"{opt(name)} must be an integer, got {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{opt(name)} must be an integer in [{lo}, {'inf' if hi is None else hi}], got {v}")
    return v


def _range(name, v, lo, hi, **kw) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{opt(name)} must be a number, got {v!r}")
    return check_range(opt(name), v, lo, hi, **kw)


def _str(name, v, none=False) -> None:
    if not (isinstance(v, str) or (none and v is None)):
        raise ValueError(f"{opt(name)} must be a string, got {v!r}")


def check_device(device: str) -> str:
    """A torch device this process can use (``cpu``, ``cuda``, ``cuda:N``, ``mps``), else a ``--device`` error."""
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a torch device; use cpu or cuda[:N]") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available to this torch ({torch.__version__}); "
                             f"use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif d.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {device}: MPS is not available; use --device cpu")
    elif d.type != "cpu":
        raise ValueError(f"--device {device}: only cpu, cuda[:N] and mps are supported")
    return device


#: image shape of a flat input of each size (for the convolutional architectures)
IMAGES = {3072: (3, 32, 32), 784: (1, 28, 28), 64: (1, 8, 8)}


def _scale(value):
    """An initial scale as the layers take it: ``"fan-in"`` is their default 1/√d_in (``None``)."""
    return None if value == FAN_IN else value


def build_model(cfg: TrainConfig, n_in: int, n_out: int) -> torch.nn.Module:
    if cfg.arch != "mlp":
        if n_in not in IMAGES:
            raise ValueError(f"--arch {cfg.arch} needs image inputs; task {cfg.task!r} has {n_in} inputs")
        g = torch.Generator().manual_seed(int(cfg.seed))
        net = build_arch(cfg.arch, make_rule(cfg.rule, **cfg.rule_kwargs()), n_out, generator=g, untied=cfg.untied,
                         sparsity=cfg.sparsity, feedback_sparsity=cfg.feedback_sparsity, image=IMAGES[n_in],
                         feedback_scale=_scale(cfg.feedback_scale),
                         dtype=getattr(torch, cfg.dtype))
        net.insert(0, torch.nn.Unflatten(1, IMAGES[n_in]))
        return net.to(cfg.device)
    sizes = tuple(cfg.sizes)
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise ValueError(f"sizes {'-'.join(map(str, sizes))} do not fit task {cfg.task!r}: "
                         f"it has {n_in} inputs and {n_out} outputs")
    g = torch.Generator().manual_seed(int(cfg.seed))
    return FeedbackMLP(
        sizes, make_rule(cfg.rule, **cfg.rule_kwargs()), activation=cfg.activation,
        output_activation=cfg.output_activation, bias=cfg.bias, weight_scale=_scale(cfg.weight_scale),
        feedback_scale=_scale(cfg.feedback_scale), sparsity=cfg.sparsity, feedback_sparsity=cfg.feedback_sparsity,
        generator=g, dtype=getattr(torch, cfg.dtype),
    ).to(cfg.device)


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
#: options a resumed run may change: they do not change its numbers (a moved folder, another data copy)
RESUME_FREE = ("quiet", "out", "data_dir")


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
    configuration must match ``cfg``) and ends exactly as an uninterrupted run would.  A ``cfg`` that
    differs from the saved one only in more ``epochs`` extends the run (finished or not): the result
    equals a run trained for that many epochs from the start (not for a cosine schedule, which
    depends on the total; an error).
    """
    from ..data import load_dataset

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
        saved = {k: v for k, v in ck["config"].items() if k not in RESUME_FREE}
        mine = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUME_FREE}
        diff = sorted(k for k in mine if jsonable(mine[k]) != jsonable(saved.get(k)))
        if diff == ["epochs"]:  # extending a run: more epochs from its last checkpoint
            done = int(ck["state"]["epoch"])
            if cfg.epochs < done:
                raise ValueError(f"--epochs {cfg.epochs}: the run in {out} has trained {done} epochs already; "
                                 f"a run can only be extended (--epochs ≥ {done})")
            if cfg.lr_schedule == "cosine":
                raise ValueError(f"--epochs: the run in {out} follows a cosine schedule, which depends on the number "
                                 "of epochs; it cannot be extended")
        elif diff:
            raise ValueError(f"--resume {out}: the configuration differs from the saved run in {', '.join(diff)}")
        (out / "summary.json").unlink(missing_ok=True)  # complete again only when this continuation ends
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
    except KeyboardInterrupt as e:
        if out is not None:
            raise Interrupted(f"interrupted at step {state.step}; {out} holds the checkpoint of epoch {state.epoch}: "
                              f"continue with  credit train --resume {out}") from e
        raise
    finally:
        if lines is not None:
            lines.close()
    seconds = state.seconds
    summary = {"rule": cfg.rule, "task": cfg.task, "seed": cfg.seed, "sizes": list(cfg.sizes), "status": status,
               "final": _final(history, seconds)}
    if getattr(data, "lossy", False):  # a stand-in: say so wherever the numbers go
        summary["lossy"] = True
        summary["data_note"] = getattr(data, "note", "")
    if message is not None:
        summary["message"] = message
        summary["diverged_at_step"] = state.step
    if out is not None:  # summary.json last: its presence marks a complete results folder
        from .plots import plot_history

        plot_history({cfg.rule: history}, out / "figures", title=f"{cfg.task}")
        _atomic_text(out / "summary.json", json.dumps(jsonable(summary), indent=2))
    summary["history"] = history
    summary["model"] = model
    return summary


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run that has a results folder; the message says how to resume it."""


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


def run_comparison(data, sizes, runs: dict, *, activation="tanh", output_activation="linear", loss="mse",
                   epochs=1, batch_size=32, seed=0, evals_per_epoch=1, task="digits", quiet=True,
                   dtype="float32", n_in=None, n_out=None, **common) -> dict:
    """Train one network per entry of ``runs`` on the same data with the rule-agnostic loop.

    ``runs`` maps a label to ``{"rule": name, "lr": η, "rule_params": {...}, **TrainConfig overrides}``.
    ``data`` needs ``x_train, y_train, x_test, y_test`` (a :class:`bridge.data.Dataset` or any object
    with those arrays, e.g. an autoencoder's ``y = x``).  Every run starts from the same seed.
    ``task`` only supplies defaults for options left unset (initial scales: digits = nn.Linear default).
    Returns ``{label: {"history": [...], "model": model, "final_metrics": learned_feedback_metrics}}``.
    """
    from ..learned_feedback import learned_feedback_metrics

    n_in = data.x_train.shape[1] if n_in is None else n_in
    n_out = (int(data.y_train.max()) + 1 if data.y_train.ndim == 1 else data.y_train.shape[1]) if n_out is None else n_out
    out = {}
    for label, spec in runs.items():
        spec = dict(spec)
        cfg = TrainConfig(task=task, rule=spec.pop("rule"), sizes=tuple(sizes), activation=activation,
                          output_activation=output_activation, loss=loss, epochs=epochs, batch_size=batch_size,
                          seed=seed, evals_per_epoch=evals_per_epoch, quiet=quiet, dtype=dtype,
                          **{**common, **spec}).resolved()
        model = build_model(cfg, n_in, n_out)
        crit = TeachingLoss(cfg.loss)
        hist = train(model, data, crit, cfg)
        out[label] = {"history": hist, "model": model, "final_metrics": learned_feedback_metrics(model)}
    return out
