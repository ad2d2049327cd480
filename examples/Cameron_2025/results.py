"""Cameron, Chen, Wagner & Sejnowski (poster), "Results": reciprocal feedback (RF) vs backprop (BP) vs
feedback alignment (FA) on fully connected classifiers — MNIST with 5 layers and CIFAR-10 with 4.

RF: each hidden-to-output layer's feedback ``R_l`` learns ``W_l⁺`` by noise-driven recirculation
(``ΔR = (x − x̂)hᵀ`` with ``h = W_l x``, ``x̂ = R_l h``, x ~ N(0, σ²I)), concurrently with the task; the
weights learn by ``δW_l = (Π_{i>l} R_i) e h_{l−1}ᵀ`` (poster's rule, gated by g'(a) for the tanh
units).  ``rf-exact`` uses the exact ``W_l⁺`` (pseudobackprop) as a control.

Layer sizes are not given on the poster; ours are contracting (the poster's condition for the
pseudoinverse recursion): MNIST 784-256-128-64-32-10 (5 weight layers), CIFAR 3072-512-256-128-10
(4 weight layers).  Loss: the poster's global squared error ½‖h_L − h_L*‖² on one-hot targets; tanh
hidden units, linear outputs, plain SGD.  The CIFAR task here is ``cifar10-lossy``, the lossy JPEG-q75
stand-in from ``--data-dir`` (fine for relative comparisons, not for absolute CIFAR-10 claims).

Poster: RF reaches BP's asymptotic error and converges faster than FA on both tasks.

Seeds: ``--seeds S1 S2 …`` trains every rule once per seed (same data, weights and noise per seed
across rules) and reports mean ± sd (ddof 1, n = number of seeds) of the final and the best test
error and of the error after the first epoch (the poster's "converges faster"); the JSON and the
figure are rewritten after every seed, so a stopped run keeps the seeds it finished.

Run ``python examples/Cameron_2025/results.py [--task mnist|cifar10-lossy] [--seeds S …] [--epochs E]
[--rules R …] [--quick] [--out DIR] [--data-dir DIR]``.
"""

from __future__ import annotations

import time

from bridge.app.examples import Example

NAME = "results"
EX = Example(__file__, seeds="list")

TASKS = {
    "mnist": {"sizes": (784, 256, 128, 64, 32, 10), "n_train": 60000, "n_test": 10000, "epochs": 3, "lr": 0.05},
    "cifar10-lossy": {"sizes": (3072, 512, 256, 128, 10), "n_train": 50000, "n_test": 10000, "epochs": 3, "lr": 0.01,
                "rule_lr": {"rf": 0.003, "rf-exact": 0.003}},
}

#: per-rule learning rates where they differ from the task's ``lr``: W⁺ products amplify the teaching
#: signal of early layers (‖W⁺‖ > 1 for contracting layers), so pseudoinverse rules need a smaller η
#: (0.05 diverged for rf-exact on MNIST; 0.01 was the best of {0.01, 0.003} in a 2-epoch sweep)
RULE_LR = {"rf": 0.01, "rf-exact": 0.01}

DEFAULTS = {"task": "mnist", "batch_size": 32, "noise_std": 1.0, "feedback_lr": 20.0, "n_noise": 32,
            "evals_per_epoch": 2, "seed": 0, "data_dir": None, "rules": ["bp", "fa", "rf", "rf-exact"]}

QUICK = {"n_train": 3000, "n_test": 1000, "epochs": 1, "evals_per_epoch": 3}


RULES = ("bp", "fa", "rf", "rf-exact")


def _data(p):
    from bridge.data import load_dataset

    kw = {"n_train": p["n_train"], "n_test": p["n_test"]}
    return load_dataset(p["task"], data_dir=EX.data_dir(p["data_dir"]), seed=p["seed"], **kw)


def simulate(params: dict | None = None) -> dict:
    import torch

    from bridge.app import run_comparison

    torch.set_num_threads(1)
    params = dict(params or {})
    task = params.get("task", DEFAULTS["task"])
    p = {**DEFAULTS, **TASKS[task], **params}
    data = _data(p)
    runs = {}
    for r in p["rules"]:
        spec = {"rule": r, "lr": p.get("rule_lr", RULE_LR).get(r, p["lr"])}
        if r == "rf":
            spec["rule_params"] = {"noise_std": p["noise_std"], "feedback_lr": p["feedback_lr"],
                                   "n_noise": p["n_noise"], "seed": p["seed"]}
        runs[r] = spec
    t0 = time.perf_counter()
    res = run_comparison(data, p["sizes"], runs, activation="tanh", output_activation="linear", loss="mse",
                             epochs=p["epochs"], batch_size=p["batch_size"], seed=p["seed"],
                             evals_per_epoch=p["evals_per_epoch"])
    out = {"params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}, "runs": {},
           "seconds": time.perf_counter() - t0}
    for label, r in res.items():
        h = r["history"]
        out["runs"][label] = {"epoch": [row["epoch"] for row in h], "test_error": [row["test_error"] for row in h],
                              "test_loss": [row["test_loss"] for row in h],
                              "angle_bp_deg": [row.get("angle_bp_deg") for row in h],
                              "angle_pbp_deg": [row.get("angle_pbp_deg") for row in h]}
        fm = r["final_metrics"]
        if label == "rf":
            out["runs"][label]["final_feedback"] = {k: fm[k] for k in fm if k.startswith("mp_") or k == "rel_dist_target"}
    out["summary"] = {k: {"test_error": v["test_error"][-1], "best_test_error": min(v["test_error"]),
                          "angle_bp_deg": v["angle_bp_deg"][-1]} for k, v in out["runs"].items()}
    return out


def _at_epoch(run: dict, epoch: float):
    """The test error at the first evaluation at or after ``epoch``."""
    for e, err in zip(run["epoch"], run["test_error"]):
        if e >= epoch - 1e-9:
            return err
    return None


def aggregate(per_seed: dict, params: dict) -> dict:
    """Multi-seed results: ``per_seed`` maps a seed to :func:`simulate`'s output; the summary is
    mean ± sd over the seeds (:func:`bridge.app.plots.mean_sd`) of the final and best test error and of
    the error after one epoch."""
    from bridge.app.plots import mean_sd

    seeds = list(per_seed)
    rules = list(per_seed[seeds[0]]["runs"])
    summary = {}
    for r in rules:
        runs = [per_seed[s]["runs"][r] for s in seeds]
        vals = {"test_error": [x["test_error"][-1] for x in runs],
                "best_test_error": [min(x["test_error"]) for x in runs],
                "error_epoch_1": [_at_epoch(x, 1.0) for x in runs]}
        summary[r] = {k: {**mean_sd(v), "per_seed": v} for k, v in vals.items()}
    return {"params": {**per_seed[seeds[0]]["params"], **params, "seeds": seeds}, "seeds": seeds,
            "per_seed": [per_seed[s] for s in seeds], "summary": summary,
            "seconds": sum(per_seed[s]["seconds"] for s in seeds)}


def plot(results: dict, axes=None):
    """Test error and angle to BP's signal (last hidden layer): mean ± sd over the seeds."""
    import matplotlib.pyplot as plt
    import numpy as np

    from bridge.app.plots import mean_sd_curves

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    per_seed = results["per_seed"]
    for i, label in enumerate(per_seed[0]["runs"]):
        runs = [ps["runs"][label] for ps in per_seed]
        n = min(len(r["epoch"]) for r in runs)
        ep = np.asarray(runs[0]["epoch"][:n])
        for ax, rows in ((axes[0], [r["test_error"][:n] for r in runs]),
                         (axes[1], [[a[-1] if a else np.nan for a in r["angle_bp_deg"][:n]] for r in runs])):
            m, sd = mean_sd_curves(rows)
            ax.plot(ep, m, color=f"C{i}", label=f"{label} (n={len(runs)})")
            ax.fill_between(ep, m - sd, m + sd, color=f"C{i}", alpha=0.2)
    axes[0].set_ylabel("test error")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("angle to BP signal, last hidden layer (°)")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=8)
    p = results["params"]
    axes[0].set_title(f"{p['task']} {'-'.join(map(str, p['sizes']))}, mean ± sd", fontsize=9)
    return axes


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--task", choices=sorted(TASKS), default="mnist")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--rules", nargs="+", default=None, metavar="R", help=f"rules to run (default: all of {', '.join(RULES)})")
    a = EX.parse(ap, argv)
    if a.rules is not None:
        bad = [r for r in a.rules if r not in RULES]
        if bad or len(set(a.rules)) != len(a.rules):
            ap.error(f"--rules must be distinct names from {', '.join(RULES)}, got {' '.join(a.rules)}")
    if a.epochs is not None and a.epochs < 1:
        ap.error(f"--epochs must be ≥ 1, got {a.epochs}")
    params = {**(QUICK if a.quick else {}), "task": a.task, "data_dir": a.data_dir}
    for k in ("epochs", "n_train", "rules"):
        if getattr(a, k) is not None:
            params[k] = getattr(a, k)
    seeds = EX.seed_params(a).get("seeds", [DEFAULTS["seed"]])
    if len(set(seeds)) != len(seeds):
        ap.error(f"--seeds must be distinct, got {' '.join(map(str, seeds))}")
    per_seed = {}
    for seed in seeds:
        per_seed[seed] = simulate({**params, "seed": seed})
        res = aggregate(per_seed, {})
        EX.save(a.out, res, plot, name=f"{NAME}_{a.task}.json", figure=f"{NAME}_{a.task}.png", ncols=2,
                figsize=(10, 3.6), constrained_layout=True)
        print(f"seed {seed} done ({per_seed[seed]['seconds']:.0f} s)", flush=True)
    for label, s in res["summary"].items():
        f, b, e1 = s["test_error"], s["best_test_error"], s["error_epoch_1"]
        print(f"{label:>9}: test error {f['mean']:.4f} ± {f['sd']:.4f} (best {b['mean']:.4f} ± {b['sd']:.4f}; "
              f"after epoch 1 {e1['mean']:.4f} ± {e1['sd']:.4f}; n = {f['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
