"""Amit (2021) §4 on CIFAR: simpnet and deepnet with BP-softmax, BP-hinge, URFB, FRFB and their
50 % random-connectivity versions (Figs. 4–6), the untied simpnet (Fig. 9) and the W–R correlation
per layer over training (Figs. 10–11).

Setup as in the paper: the networks of :mod:`bridge.archs` (satlin units, zero-padded centred
Maxpool 3, dropout, Glorot-uniform weights), plain SGD with a fixed step, no normalisation, no
preprocessing (pixels in [0, 1]), no augmentation; URFB/FRFB and BP-H use the multi-class hinge
(eq. 4, μ = 1 — the paper gives no μ), BP the softmax cross-entropy.  The paper trains 1000 epochs
with batch 500 and step 0.1; here the budget is what a run can afford, stated with every number.

The depth claim is reported as a paired, per-seed difference: (FRFB − BP) on deepnet minus
(FRFB − BP) on simpnet, and the same for URFB (the claim: large for FRFB, small for URFB).

Data: ``--task cifar10`` / ``cifar100`` (the original files in ``--data-dir``) or ``cifar10-lossy``
(the JPEG stand-in; numbers measured on it are not CIFAR-10's).

Run ``python examples/Amit_2021/cifar.py --quick`` (seconds) or with ``--nets``, ``--conditions``,
``--epochs``, ``--n-train``, ``--seeds`` for a real budget.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bridge.app.examples import Example

#: condition → (rule, loss, sparsity of W and R)
CONDITIONS = {
    "bp-softmax": ("bp", "ce", 0.0),
    "bp-hinge": ("bp", "hinge", 0.0),
    "urfb": ("urfb", "hinge", 0.0),
    "frfb": ("frfb", "hinge", 0.0),
    "urfb-50": ("urfb", "hinge", 0.5),
    "frfb-50": ("frfb", "hinge", 0.5),
}
NETS = {"simpnet": "amit-simpnet", "deepnet": "amit-deepnet", "simpnet-untied": "amit-simpnet"}

DEFAULTS = {
    "task": "cifar10-lossy",
    "nets": ["simpnet", "deepnet"],
    "conditions": ["bp-softmax", "bp-hinge", "urfb", "frfb"],
    "seeds": [0],
    "epochs": 5,
    "n_train": 10000,
    "n_test": 2000,
    "batch_size": 100,
    "lr": 0.1,
    "evals_per_epoch": 2,
    "data_dir": None,
}
QUICK = {"nets": ["simpnet", "deepnet"], "conditions": ["bp-hinge", "urfb", "frfb"], "epochs": 1, "n_train": 256,
         "n_test": 128, "batch_size": 64, "evals_per_epoch": 1}


EX = Example(__file__, seeds="list")

def simulate(params: dict | None = None, *, out: Path | None = None, log=print) -> dict:
    """Train every (net, condition, seed); returns ``{"params", "runs", "summary"}``."""
    from bridge.app.runs import TrainConfig, run_experiment
    from bridge.data import load_dataset

    p = {**DEFAULTS, **(params or {})}
    data = load_dataset(p["task"], data_dir=EX.data_dir(p["data_dir"]), seed=0, n_train=p["n_train"], n_test=p["n_test"])
    runs = []
    for net in p["nets"]:
        for cond in p["conditions"]:
            rule, loss, sparsity = CONDITIONS[cond]
            for seed in p["seeds"]:
                folder = None if out is None else out / net / cond / f"seed{seed}"
                cfg = TrainConfig(task=p["task"], rule=rule, arch=NETS[net], untied=net.endswith("untied"),
                                  loss=loss, lr=p["lr"], batch_size=p["batch_size"], epochs=p["epochs"],
                                  seed=int(seed), sparsity=sparsity, feedback_sparsity=sparsity if rule != "bp" else 0.0,
                                  n_train=p["n_train"], n_test=p["n_test"], data_dir=p["data_dir"],
                                  evals_per_epoch=p["evals_per_epoch"], probe_size=64, quiet=True,
                                  out=None if folder is None else str(folder))
                t0 = time.perf_counter()
                res = run_experiment(cfg, data=data, write=folder is not None)
                hist = [{k: r.get(k) for k in ("epoch", "train_loss", "test_loss", "test_error", "alignment_deg",
                                               "angle_bp_deg")} for r in res["history"]]
                runs.append({"net": net, "condition": cond, "seed": int(seed), "status": res["status"],
                             "history": hist, "test_error": res["history"][-1].get("test_error"),
                             "seconds": time.perf_counter() - t0})
                if log:
                    log(f"{net:14s} {cond:10s} seed {seed}: test error {runs[-1]['test_error']:.4f} "
                        f"[{res['status']}]  ∠(R, W) {_fmt(res['history'][-1].get('alignment_deg'))}  "
                        f"({runs[-1]['seconds']:.0f} s)")
    return {"params": p, "runs": runs, "summary": summarize(runs, p)}


def _fmt(xs):
    return "-" if not xs else "[" + ", ".join(f"{x:.0f}°" for x in xs) + "]"


def summarize(runs, p) -> dict:
    """Mean ± sd (ddof 1 when n > 1) of the final test error per (net, condition), and the paired
    depth differences per seed."""
    from bridge.app.plots import mean_sd

    err = {}
    for r in runs:
        err.setdefault(r["net"], {}).setdefault(r["condition"], []).append(r["test_error"])
    table = {net: {c: mean_sd(v) for c, v in per.items()} for net, per in err.items()}
    depth = {}
    if {"simpnet", "deepnet"} <= set(err):
        by = {(r["net"], r["condition"], r["seed"]): r["test_error"] for r in runs}
        for rule in ("frfb", "urfb"):
            diffs = [(by[("deepnet", rule, s)] - by[("deepnet", "bp-hinge", s)])
                     - (by[("simpnet", rule, s)] - by[("simpnet", "bp-hinge", s)])
                     for s in p["seeds"] if all(k in by for k in (("deepnet", rule, s), ("deepnet", "bp-hinge", s),
                                                                  ("simpnet", rule, s), ("simpnet", "bp-hinge", s)))]
            if diffs:
                depth[f"{rule}_minus_bp_deepnet_minus_simpnet"] = {"per_seed": diffs, **mean_sd(diffs)}
    return {"test_error": table, "depth_claim": depth}


def plot(results: dict, axes) -> None:
    """Test error over epochs per condition (one panel per net) and the W–R angle of the last
    layers (Figs. 4, 6, 10)."""
    nets = results["params"]["nets"]
    for ax, net in zip(axes, nets):
        for r in (r for r in results["runs"] if r["net"] == net and r["seed"] == results["params"]["seeds"][0]):
            ax.plot([h["epoch"] for h in r["history"]], [h["test_error"] for h in r["history"]], label=r["condition"])
        ax.set_title(net)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test error")
        ax.legend(fontsize=7)
    if len(axes) > len(nets):
        ax = axes[len(nets)]
        for r in results["runs"]:
            if r["condition"] in ("urfb", "frfb") and r["seed"] == results["params"]["seeds"][0]:
                al = [h["alignment_deg"] for h in r["history"] if h.get("alignment_deg")]
                if al:
                    ep = [h["epoch"] for h in r["history"] if h.get("alignment_deg")]
                    for k in range(len(al[0])):
                        ax.plot(ep, [np.cos(np.radians(a[k])) for a in al],
                                ls="-" if r["condition"] == "urfb" else "--", label=f"{r['net']} {r['condition']} L{k + 2}")
        ax.set_title("correlation of W and R (Figs. 10–11)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cos ∠(W, R)")
        ax.legend(fontsize=6)


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--task", help="cifar10, cifar100 or cifar10-lossy (default)")
    ap.add_argument("--nets", nargs="+", choices=list(NETS), help="default simpnet deepnet")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    args = EX.parse(ap, argv)
    params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
    for k in ("task", "nets", "conditions", "epochs", "n_train", "n_test", "batch_size", "lr", "data_dir"):
        v = getattr(args, k)
        if v is not None:
            params[k] = v
    out = args.out
    t0 = time.perf_counter()
    results = simulate(params, out=out / "runs")
    EX.save(out, {k: results[k] for k in ("params", "summary")}, name="summary.json")
    (out / "runs.json").write_text(json.dumps(results["runs"], default=float))
    EX.figure(out / "cifar.png", plot, results, ncols=len(results["params"]["nets"]) + 1, figsize=(13, 3.8))
    s = results["summary"]
    budget = (f"{results['params']['epochs']} epoch(s) × {results['params']['n_train']} images, batch "
              f"{results['params']['batch_size']}, step {results['params']['lr']}")
    print(f"\nfinal test error on {results['params']['task']} ({budget}):")
    for net, per in s["test_error"].items():
        print(f"  {net:14s} " + "  ".join(f"{c} {v['mean'] * 100:.1f}" + (f" ± {v['sd'] * 100:.1f}" if v["n"] > 1 else "")
                                        for c, v in per.items()))
    for k, v in s["depth_claim"].items():
        print(f"  {k}: {v['mean'] * 100:+.1f} % (n = {v['n']})")
    print(f"wrote {out}/ ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
