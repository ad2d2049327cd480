"""Lillicrap et al. (2016), Fig. 2c–d: FA trains a deeper layer through random matrices (task 3).

Task 3 (Methods): 30–20–10 and 30–20–10–10 networks with tanh hidden units, linear outputs and a
bias on every unit learn to approximate a fixed 30–20–10–10 tanh target network
``y* = W₂ tanh(W₁ tanh(W₀ x + b₀) + b₁) + b₂``, ``x ~ N(0, I)``; the data set is generated once,
5000 points are held out as the test set, and performance is the normalised squared error
``NSE = Σ‖y* − y‖² / Σ‖y*‖²`` on them.  Five conditions, as in Fig. 2d:

* ``shallow-3`` — 3-layer net, only the output weights learn (FA with B = 0, as in fig1.py);
* ``bp-3``, ``fa-3`` — 3-layer net, backprop / feedback alignment ``Δh_FA = B e``;
* ``bp-4``, ``fa-4`` — 4-layer net; FA's deeper hidden update is
  ``Δh⁰_FA = B₁((B₂ e) ∘ h′₁)`` (Fig. 2c), BP's ``Δh⁰_BP = W₁ᵀ((W₂ᵀ e) ∘ h′₁)``.

The paper's claim (text, Fig. 2d): both BP (p = 3·10⁻¹²) and FA (p = 9·10⁻¹³) reach a lower test
error with the 4-layer net than with the 3-layer net (t-tests, n = 20).  Following the Methods the
target network is drawn once and kept for every seed (``teacher_seed``); each seed draws new
forward weights, biases and feedback matrices; every condition of a seed sees the same examples in
the same order.

What the paper leaves open, and our choices: the target network's scale (the paper only says it
was chosen so that backprop gains "an unambiguous advantage" from the extra layer; ours is
:func:`bridge.data.lillicrap_nonlinear`'s, hidden gain 2, bias sd 0.5), the number of training
points and of iterations ("terminated … when backprop made negligible gains on the training
error"), η and the scales of W and B ("selected manually").  We use the task's defaults in
``bridge/app/tasks.py`` (``lillicrap-nonlinear``: 2000 training points, W, b ~ U(±0.1),
B ~ U(±0.5), η = 0.005, one example per step).

Run ``python examples/Lillicrap_2016/fig2cd.py [--quick] [--seeds N] [--epochs E] [--out DIR]``.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from bridge.app.examples import Example
from bridge.app.plots import mean_sd, mean_sd_curves

NAME = "fig2cd"
EX = Example(__file__, seeds="count")

SIZES = {3: (30, 20, 10), 4: (30, 20, 10, 10)}

#: condition → (layers, overrides of the task-3 defaults)
CONDITIONS = {
    "shallow-3": (3, {"rule": "fa", "feedback_scale": 0.0}),
    "bp-3": (3, {"rule": "bp"}),
    "fa-3": (3, {"rule": "fa"}),
    "bp-4": (4, {"rule": "bp"}),
    "fa-4": (4, {"rule": "fa"}),
}

DEFAULTS = {
    "seed": 0,              # the first seed (student weights and B)
    "seeds": 5,
    "teacher_seed": 0,      # the target network and the data set, fixed across seeds (Methods)
    "epochs": 20,
    "n_train": 2000,
    "n_test": 5000,         # Methods: 5000 held-out points
    "lr": 0.005,
    "weight_scale": 0.1,
    "feedback_scale": 0.5,
    "evals_per_epoch": 2,
    "conditions": list(CONDITIONS),
}

QUICK = {"seeds": 1, "epochs": 2, "n_train": 1000, "n_test": 1000, "evals_per_epoch": 2}


def _check(p: dict) -> None:
    bad = [c for c in p["conditions"] if c not in CONDITIONS]
    if bad or not p["conditions"]:
        raise ValueError(f"conditions must be a non-empty list among {', '.join(CONDITIONS)}, got {p['conditions']!r}")
    for k in ("seeds", "epochs", "n_train", "n_test", "evals_per_epoch"):
        if isinstance(p[k], bool) or not isinstance(p[k], int) or p[k] < 1:
            raise ValueError(f"{k} must be an integer ≥ 1, got {p[k]!r}")


def simulate(params: dict | None = None, *, progress=None) -> dict:
    """Train every condition for every seed on one data set; curves (one row per seed) and a summary."""
    import torch

    from bridge.app.runs import TrainConfig, run_experiment
    from bridge.data import load_dataset

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    _check(p)
    data = load_dataset("lillicrap-nonlinear", seed=int(p["teacher_seed"]), n_train=p["n_train"], n_test=p["n_test"])
    out = {"params": p, "conditions": {}}
    for cond in p["conditions"]:
        layers, over = CONDITIONS[cond]
        curves = {"examples": None, "nse": [], "train_loss": [], "angle_bp_deg": []}
        for seed in range(int(p["seed"]), int(p["seed"]) + int(p["seeds"])):
            t0 = time.perf_counter()
            cfg = TrainConfig(
                task="lillicrap-nonlinear", sizes=SIZES[layers], seed=seed, epochs=p["epochs"], lr=p["lr"],
                batch_size=1, weight_scale=p["weight_scale"], n_train=p["n_train"], n_test=p["n_test"],
                evals_per_epoch=p["evals_per_epoch"], quiet=True, **{"feedback_scale": p["feedback_scale"], **over},
            )
            with warnings.catch_warnings():  # B = 0 gives all-nan angles (shallow): expected
                warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
                run = run_experiment(cfg, data=data, write=False)
            if run["status"] != "finished":
                raise RuntimeError(f"{cond} seed {seed}: {run.get('message')}")
            h = run["history"]
            curves["examples"] = [r["epoch"] * p["n_train"] for r in h]
            curves["nse"].append([r["test_nse"] for r in h])
            curves["train_loss"].append([r["train_loss"] for r in h])
            curves["angle_bp_deg"].append([r.get("angle_bp_deg") for r in h])
            if progress is not None:
                progress(f"{NAME}: {cond} seed {seed}: NSE {h[0]['test_nse']:.3f} -> {h[-1]['test_nse']:.4f} "
                         f"({time.perf_counter() - t0:.1f} s)")
        out["conditions"][cond] = curves
    out["summary"] = summarize(out)
    return out


def _paired(a, b) -> dict:
    """``a − b`` per seed: mean ± sd, how many seeds have a < b, and the paired t statistic."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    s = mean_sd(d)
    t = s["mean"] / (s["sd"] / math.sqrt(s["n"])) if s["n"] > 1 and s["sd"] else None
    return {**s, "n_lower": int((d < 0).sum()), "t": t}


def summarize(results: dict) -> dict:
    """Final test NSE per condition; 4-layer − 3-layer differences paired by seed (BP and FA)."""
    c = results["conditions"]
    final = {k: [row[-1] for row in v["nse"]] for k, v in c.items()}
    summ = {"nse_final": {k: mean_sd(v) for k, v in final.items()},
            "nse_initial": {k: mean_sd([row[0] for row in v["nse"]]) for k, v in c.items()}}
    for rule in ("bp", "fa"):
        if f"{rule}-3" in final and f"{rule}-4" in final:
            summ[f"{rule}_4_minus_3"] = _paired(final[f"{rule}-4"], final[f"{rule}-3"])
    if "fa-4" in c:  # FA's angle to BP in each hidden layer of the deep net, at the end (deg)
        last = [row[-1] for row in c["fa-4"]["angle_bp_deg"] if row[-1]]
        if last:
            summ["fa4_angle_bp_deg_final"] = [mean_sd([a[l] for a in last]) for l in range(len(last[0]))]
    return summ


COLORS = {"shallow-3": "0.7", "bp-3": "k", "fa-3": "tab:green", "bp-4": "m", "fa-4": "tab:blue"}


def plot(results: dict, axes) -> None:
    """Fig. 2d: test NSE (mean ± sd over seeds) against examples; right: final NSE per seed."""
    ax, ax2 = axes
    for cond, c in results["conditions"].items():
        ex = np.asarray(c["examples"])
        m, s = mean_sd_curves(np.asarray(c["nse"], dtype=float))
        ax.plot(ex, m, color=COLORS[cond], label=cond)
        ax.fill_between(ex, m - s, m + s, color=COLORS[cond], alpha=0.2, lw=0)
    ax.set(xlabel="training examples", ylabel="test NSE", yscale="log",
           title="Fig. 2d: task 3 (teacher 30-20-10-10 tanh)")
    ax.legend(frameon=False, fontsize=8)
    conds = list(results["conditions"])
    for i, cond in enumerate(conds):
        v = [row[-1] for row in results["conditions"][cond]["nse"]]
        ax2.plot([i] * len(v), v, "o", color=COLORS[cond], alpha=0.7)
    ax2.set(xticks=range(len(conds)), xticklabels=conds, ylabel="final test NSE", yscale="log",
            title=f"after {results['params']['epochs'] * results['params']['n_train']} examples")


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--epochs", type=int, default=None, help=f"passes over the training set (default {DEFAULTS['epochs']})")
    ap.add_argument("--conditions", nargs="+", default=None, choices=list(CONDITIONS), help="conditions to run (default: all)")
    args = EX.parse(ap, argv)
    params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    if args.conditions:
        params["conditions"] = args.conditions
    t0 = time.perf_counter()
    results = simulate(params, progress=lambda s: print(s, flush=True))
    out = args.out
    results["seconds"] = time.perf_counter() - t0
    EX.save(out, results, plot, ncols=2, figsize=(10, 3.8), constrained_layout=True)
    s = results["summary"]
    for cond, st in s["nse_final"].items():
        print(f"{cond:10s} final test NSE {st['mean']:.4f} ± {st['sd']:.4f} (n = {st['n']})")
    for rule in ("bp", "fa"):
        d = s.get(f"{rule}_4_minus_3")
        if d:
            print(f"{rule.upper()} 4-layer − 3-layer: {d['mean']:+.4f} ± {d['sd']:.4f}; 4-layer lower in "
                  f"{d['n_lower']}/{d['n']} seeds (paired t = {d['t'] if d['t'] is None else round(d['t'], 2)})")
    print(f"wrote {out / 'results.json'} and {out / (NAME + '.png')} ({results['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
