"""Lillicrap et al. (2016), task 2 (Fig. 2a–b): MNIST with a 784–1000–10 logistic network.

Backprop vs feedback alignment, and FA with 50 % of the elements of W_0, W and B removed
("neurons in h and y have a 25 % chance of reciprocal connection"; remaining elements drawn
from the same uniform distributions).  Every unit is logistic with a bias, targets are one-hot,
the loss is the squared error ``½‖y* − y‖²`` (batch mean), and training is plain minibatch SGD.
Paper (n = 20 each): BP 2.4 %, FA 2.1 %, sparse FA 2.4 % test error.

Hyper-parameters (the paper tuned ω and η for BP and β for FA by hand; so did we, on 2 epochs of
a 20k-image subset): W ~ U(−0.3, 0.3), B ~ U(−2, 2), η = 0.2 on the batch-mean gradient with
batch 32 (≈ 6·10⁻³ per example, 6× the paper's online η = 10⁻³).  Larger η saturates the output
units in the first few hundred steps (all outputs → 0, σ' → 0) and learning stops; B's scale sets
FA's effective hidden-layer learning rate (B ~ U(±0.05) learns much more slowly than BP).  The
paper trained "until backprop began to overfit"; our default of 20 epochs is set by the compute
budget (≈ 5 s per epoch on one CPU core), so the errors are higher than the paper's.

Run ``python examples/Lillicrap_2016/task2_mnist.py [--quick] [--seeds N] [--epochs E]
[--data-dir DIR] [--out DIR]``; MNIST IDX files are read from ``--data-dir``, else
``$CREDIT_DATA_DIR`` (one of the two is needed).
"""

from __future__ import annotations

import time

import numpy as np

from bridge.app.examples import Example
from bridge.app.plots import mean_sd, mean_sd_curves

NAME = "task2_mnist"
EX = Example(__file__, seeds="count")

#: condition → TrainConfig overrides
CONDITIONS = {
    "bp": {"rule": "bp"},
    "fa": {"rule": "fa"},
    "fa_sparse50": {"rule": "fa", "sparsity": 0.5, "feedback_sparsity": 0.5},
}

#: the paper's numbers (test error, %, mean of n = 20 runs)
PAPER = {"bp": 2.4, "fa": 2.1, "fa_sparse50": 2.4}

DEFAULTS = {
    "seed": 0,
    "seeds": 3,
    "epochs": 20,
    "lr": 0.2,
    "batch_size": 32,
    "weight_scale": 0.3,
    "feedback_scale": 2.0,
    "weight_decay": 1e-6,   # Methods: α = 10⁻⁶
    "n_train": None,        # all 60,000
    "n_test": None,         # all 10,000
    "evals_per_epoch": 1,
    "conditions": list(CONDITIONS),
    "data_dir": None,
}

QUICK = {"seeds": 1, "epochs": 1, "n_train": 2000, "n_test": 1000, "evals_per_epoch": 2}


def simulate(params: dict | None = None, *, progress=None) -> dict:
    """Train every condition for every seed on MNIST; return test-error curves and a summary."""
    import torch

    from bridge.app.runs import TrainConfig, run_experiment
    from bridge.data import load_dataset

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    data_dir = EX.data_dir(p["data_dir"])
    data = load_dataset("mnist", data_dir=data_dir, n_train=p["n_train"], n_test=p["n_test"])
    out = {"params": {**p, "data_dir": data_dir, "n_train": data.n_train, "n_test": data.n_test}, "conditions": {}}
    for cond in p["conditions"]:
        curves = {"epoch": None, "test_error": [], "angle_bp_deg": [], "seconds": []}
        for seed in range(int(p["seed"]), int(p["seed"]) + int(p["seeds"])):
            cfg = TrainConfig(
                task="mnist", seed=seed, epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"],
                weight_scale=p["weight_scale"], feedback_scale=p["feedback_scale"],
                weight_decay=p["weight_decay"], evals_per_epoch=p["evals_per_epoch"], quiet=True,
                **CONDITIONS[cond],
            )
            t0 = time.perf_counter()
            try:
                h = run_experiment(cfg, data=data, write=False)["history"]
            except FloatingPointError as e:  # keep the other runs; the summary counts it as failed
                if progress is not None:
                    progress(f"{NAME}: {cond} seed {seed}: FAILED: {e}")
                curves["test_error"].append(None)
                curves["angle_bp_deg"].append(None)
                curves["seconds"].append(time.perf_counter() - t0)
                continue
            curves["epoch"] = [r["epoch"] for r in h]
            curves["test_error"].append([r["test_error"] for r in h])
            curves["angle_bp_deg"].append([r["angle_bp_deg"][0] for r in h])
            curves["seconds"].append(time.perf_counter() - t0)
            if progress is not None:
                progress(f"{NAME}: {cond} seed {seed}: test error {100 * h[-1]['test_error']:.2f} % after "
                         f"{p['epochs']} epochs, FA∠BP {h[-1]['angle_bp_deg'][0]:.0f}° "
                         f"({curves['seconds'][-1]:.0f} s)")
        out["conditions"][cond] = curves
    out["summary"] = summarize(out)
    return out


def summarize(results: dict) -> dict:
    """Per condition: final and best test error in %, mean ± sd over the seeds that finished."""
    summ = {}
    for cond, c in results["conditions"].items():
        ok = [row for row in c["test_error"] if row is not None]
        final = np.asarray([100 * row[-1] for row in ok])
        best = np.asarray([100 * min(row[1:] or row) for row in ok])
        ang = np.asarray([row[-1] for row in c["angle_bp_deg"] if row is not None], dtype=float)

        def ms(v):
            s = mean_sd(v)
            return (s["mean"], s["sd"]) if s["n"] else (None, None)

        summ[cond] = {
            "n": int(final.size), "failed": len(c["test_error"]) - len(ok),
            "test_error_pct_mean": ms(final)[0], "test_error_pct_sd": ms(final)[1],
            "best_test_error_pct_mean": ms(best)[0], "best_test_error_pct_sd": ms(best)[1],
            "angle_bp_deg_final_mean": float(np.nanmean(ang)) if ang.size and np.isfinite(ang).any() else None,
            "paper_test_error_pct": PAPER.get(cond),
        }
    return summ


COLORS = {"bp": "k", "fa": "tab:green", "fa_sparse50": "tab:olive"}


def plot(results: dict, axes) -> None:
    """Fig. 2a (test error, mean ± sd over seeds) on ``axes[0]``, Fig. 2b (FA ∠ BP) on ``axes[1]``."""
    ax_a, ax_b = axes
    for cond, c in results["conditions"].items():
        rows = [r for r in c["test_error"] if r is not None]
        if not rows:
            continue
        ep = np.asarray(c["epoch"])
        err = 100 * np.asarray(rows, dtype=float)
        m, s = mean_sd_curves(err)
        ax_a.plot(ep[1:], m[1:], color=COLORS.get(cond), label=cond)
        ax_a.fill_between(ep[1:], (m - s)[1:], (m + s)[1:], color=COLORS.get(cond), alpha=0.2, lw=0)
        if cond != "bp":
            ang = np.asarray([r for r in c["angle_bp_deg"] if r is not None], dtype=float)
            ax_b.plot(ep, np.nanmean(ang, 0), color=COLORS.get(cond), label=cond)
    ax_a.set(xlabel="epoch", ylabel="test error (%)", yscale="log", title="Fig. 2a: MNIST 784-1000-10")
    ax_a.legend(frameon=False)
    ax_b.axhline(90, color="0.6", ls=":", lw=1)
    ax_b.set(xlabel="epoch", ylabel="Δh_FA ∠ Δh_BP (deg)", ylim=(0, 100), title="Fig. 2b")
    ax_b.legend(frameon=False)


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--epochs", type=int, default=None, help=f"epochs (default {DEFAULTS['epochs']})")
    ap.add_argument("--lr", type=float, default=None, help=f"learning rate on the batch mean (default {DEFAULTS['lr']})")
    ap.add_argument("--feedback-scale", type=float, default=None, help=f"B ~ U(±β) (default {DEFAULTS['feedback_scale']})")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=None)
    args = EX.parse(ap, argv)
    params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
    for k in ("epochs", "lr", "feedback_scale", "conditions", "data_dir"):
        if getattr(args, k) is not None:
            params[k] = getattr(args, k)
    t0 = time.perf_counter()
    results = simulate(params, progress=lambda s: print(s, flush=True))
    results["seconds"] = time.perf_counter() - t0
    out = args.out
    EX.save(out, results, plot, ncols=2, figsize=(9, 3.6), constrained_layout=True)
    print(f"{'condition':12s} {'n':>2s} {'test error %':>16s} {'best %':>14s} {'paper %':>7s}")
    for cond, s in results["summary"].items():
        if s["n"] == 0:
            print(f"{cond:12s}  0 (all runs failed)")
            continue
        print(f"{cond:12s} {s['n']:2d} {s['test_error_pct_mean']:8.2f} ± {s['test_error_pct_sd']:.2f}  "
              f"{s['best_test_error_pct_mean']:7.2f} ± {s['best_test_error_pct_sd']:.2f} {s['paper_test_error_pct']:7.1f}")
    print(f"wrote {out / 'results.json'} and {out / (NAME + '.png')} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
