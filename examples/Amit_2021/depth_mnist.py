"""Amit (2021) §4, the depth claim — URFB stays near BP while FRFB falls behind as depth grows.

The paper shows it on CIFAR-10/100 with convolutional nets (simpnet → deepnet → deepernet, Fig. 5–7;
experiments list items 2–3: "For deeper networks URFB again performs close to BP but FRFB
performance degrades significantly").  This example checks the same claim at affordable size with
dense nets on MNIST, keeping the paper's learning setup:

* saturated linear hidden units ``σ(a) = clip(a, −1, 1)`` with the eq. 3 gate, linear outputs;
* Amit's multi-class hinge loss (eq. 4–6) with μ = 1 (the paper does not give its μ);
* plain minibatch SGD with a fixed step, no momentum, no weight decay, no normalisation,
  no preprocessing (pixels / 255), no augmentation;
* BP, URFB (ε = 1, R learns W's Hebbian increment transposed) and FRFB (R fixed) — all hinge;
* a shallow (2 hidden layers) and a deep (4 hidden layers) net of the same width.

Deviations from the paper (forced by compute or by the dense-net setting; see docs/results_amit.md):
MNIST instead of CIFAR, dense layers instead of conv, 6 epochs instead of 1000, batch 100 / step
0.05 instead of batch 500 / step 0.1, one uniform init scale U(±0.07) for every W and R (close to the
paper's Glorot-uniform bound √(6/(fan_in+fan_out)) = 0.068–0.077 of the hidden layers; the engine
takes one scale for all layers).  Step 0.1 stalls the 4-hidden-layer dense net under BP: within one
epoch all units of the last hidden layer (88 % of the third) are saturated on every test image, their
gate (eq. 3) is 0 and the test error stays near 90 %; 0.05 trains both depths.

Run ``python examples/Amit_2021/depth_mnist.py`` (full: 18 runs, ~15 min on one shared core) or ``--quick``.
(From the repository root with the package installed — ``pip install -e .`` — or ``PYTHONPATH=.``.)
Data: ``--data-dir`` or ``CREDIT_DATA_DIR`` (a folder holding ``mnist/`` or the IDX files).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bridge.app.examples import Example, load_example
from bridge.app.plots import mean_sd, mean_sd_curves
from plasticity import rule_parameters

RULES = ("bp", "urfb", "frfb")
COLORS = {"bp": "tab:green", "urfb": "tab:blue", "frfb": "tab:red"}  # the paper's Fig. 4/7 colours

S = load_example(Path(__file__).with_name("_settings.py"))

DEFAULTS = {
    "depths": {"2 hidden": (784, 500, 500, 10), "4 hidden": (784, 500, 500, 500, 500, 10)},
    "rules": RULES,
    "seeds": (0, 1, 2),
    "epochs": 6,
    **S.MNIST_TRAINING,  # lr 0.05, batch 100, μ = 1, ε = 1, W and R ~ U(±0.07)
    "n_train": None,   # all 60 000 training images (an int takes the first n)
    "n_test": None,    # all 10 000
    "evals_per_epoch": 1,
    "data_dir": None,
}

QUICK = {
    "depths": {"2 hidden": (784, 64, 64, 10), "4 hidden": (784, 64, 64, 64, 64, 10)},
    "seeds": (0,),
    "epochs": 1,
    "batch_size": 20,
    "n_train": 2000,
    "n_test": 1000,
}


EX = Example(__file__, seeds="list")

def simulate(params: dict | None = None, *, out: Path | None = None, log=print) -> dict:
    """Train every (depth, rule, seed) with :func:`bridge.train.run_experiment`.

    Returns ``{"params", "runs": [{"depth", "sizes", "rule", "seed", "history", "final"}], "summary"}``.
    With ``out`` each run writes its results folder to ``out/<depth>/<rule>/seed<k>``.
    """
    from bridge.app.runs import TrainConfig, run_experiment
    from bridge.data import load_dataset

    p = {**DEFAULTS, **(params or {})}
    data_dir = EX.data_dir(p["data_dir"])
    data = load_dataset("mnist", data_dir=data_dir, n_train=p["n_train"], n_test=p["n_test"])
    runs = []
    for depth, sizes in p["depths"].items():
        for rule in p["rules"]:
            for seed in p["seeds"]:
                folder = None if out is None else out / depth.replace(" ", "_") / rule / f"seed{seed}"
                cfg = TrainConfig(
                    task="mnist", rule=rule, sizes=tuple(sizes), activation="satlin", output_activation="linear",
                    loss="hinge", mu=p["mu"], epsilon=p["epsilon"] if "epsilon" in rule_parameters(rule) else None,
                    lr=p["lr"], epochs=p["epochs"],
                    batch_size=p["batch_size"], weight_scale=p["weight_scale"], feedback_scale=p["feedback_scale"],
                    momentum=0.0, weight_decay=0.0, seed=int(seed), data_dir=str(data_dir), n_train=p["n_train"],
                    n_test=p["n_test"], evals_per_epoch=p["evals_per_epoch"], quiet=True,
                    out=None if folder is None else str(folder),
                )
                t0 = time.perf_counter()
                res = run_experiment(cfg, data=data, write=folder is not None)
                fin = res["final"]
                runs.append({"depth": depth, "sizes": list(sizes), "rule": rule, "seed": int(seed),
                             "history": [_row(r) for r in res["history"]], "final": _jsonable(fin)})
                if log:
                    al = fin.get("alignment_deg")
                    log(f"{depth:9s} {rule:5s} seed {seed}: test error {fin['test_error']:.4f}  "
                        f"angle to BP {_fmt(fin.get('angle_bp_deg'))}"
                        + (f"  ∠(R, Wᵀ) {_fmt(al)}" if al else "") + f"  ({time.perf_counter() - t0:.0f} s)")
    return {"params": p, "runs": runs, "summary": summarize(runs, p)}


def _fmt(xs):
    return "[" + ", ".join(f"{x:.0f}°" for x in xs) + "]" if xs else "–"


def _row(r):
    keep = ("epoch", "step", "train_loss", "test_loss", "test_error", "angle_bp_deg", "alignment_deg")
    return _jsonable({k: r[k] for k in keep if k in r})


def _jsonable(obj):
    from bridge.app.runs import jsonable

    return jsonable(obj)


def _ms(xs):

    s = mean_sd(xs)
    return s["mean"], s["sd"]


def summarize(runs, p) -> dict:
    """Final test error mean ± sd per (depth, rule), and the gaps to BP paired by seed."""
    out = {"error": {}, "gap_to_bp": {}, "claim": {}}
    depths = list(p["depths"])
    for depth in depths:
        err = {rule: {r["seed"]: r["final"]["test_error"] for r in runs if r["depth"] == depth and r["rule"] == rule}
               for rule in p["rules"]}
        out["error"][depth] = {rule: dict(zip(("mean", "sd"), _ms(list(v.values())))) | {"n": len(v)}
                               for rule, v in err.items() if v}
        if "bp" in err:
            out["gap_to_bp"][depth] = {}
            for rule in p["rules"]:
                if rule == "bp" or not err.get(rule):
                    continue
                gaps = [err[rule][s] - err["bp"][s] for s in err[rule] if s in err["bp"]]
                out["gap_to_bp"][depth][rule] = dict(zip(("mean", "sd"), _ms(gaps))) | {"n": len(gaps)}
    g = out["gap_to_bp"]
    if len(depths) >= 2 and all(d in g and {"urfb", "frfb"} <= set(g[d]) for d in (depths[0], depths[-1])):
        shallow, deep = depths[0], depths[-1]
        out["claim"] = {
            "frfb_gap_grows_with_depth": g[deep]["frfb"]["mean"] > g[shallow]["frfb"]["mean"],
            "urfb_closer_to_bp_than_frfb_when_deep": abs(g[deep]["urfb"]["mean"]) < g[deep]["frfb"]["mean"],
            "frfb_gap_shallow": g[shallow]["frfb"]["mean"], "frfb_gap_deep": g[deep]["frfb"]["mean"],
            "urfb_gap_shallow": g[shallow]["urfb"]["mean"], "urfb_gap_deep": g[deep]["urfb"]["mean"],
        }
    return out


def plot(results: dict, axes) -> None:
    """One panel per depth (test error vs epoch, mean ± sd over seeds), then final error vs depth."""
    axes = np.ravel(axes)
    p = results["params"]
    depths = list(p["depths"])
    for ax, depth in zip(axes, depths):
        for rule in p["rules"]:
            hs = [r["history"] for r in results["runs"] if r["depth"] == depth and r["rule"] == rule]
            if not hs:
                continue
            ep = np.array([row["epoch"] for row in hs[0]])
            e = np.array([[row["test_error"] for row in h] for h in hs]) * 100
            m, s = mean_sd_curves(e)
            ax.plot(ep, m, color=COLORS.get(rule), label=rule.upper())
            ax.fill_between(ep, m - s, m + s, color=COLORS.get(rule), alpha=0.2, lw=0)
        sizes = "-".join(map(str, p["depths"][depth]))
        ax.set(title=f"{depth}: {sizes}", xlabel="epoch", ylabel="test error [%]", yscale="log")
        ax.legend(fontsize=8)
    if len(axes) > len(depths):
        ax = axes[len(depths)]
        x = np.arange(len(depths))
        for j, rule in enumerate(p["rules"]):
            st = [results["summary"]["error"][d].get(rule) for d in depths]
            m = [s["mean"] * 100 if s else np.nan for s in st]
            sd = [s["sd"] * 100 if s else np.nan for s in st]
            ax.errorbar(x + 0.08 * (j - 1), m, yerr=sd, marker="o", capsize=3, color=COLORS.get(rule), label=rule.upper())
        ax.set(xticks=x, xticklabels=depths, ylabel="final test error [%]",
               title=f"after {p['epochs']} epochs, {len(p['seeds'])} seed(s)")
        ax.legend(fontsize=8)


def write_outputs(results: dict, out: Path) -> dict:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(results["params"]["depths"]) + 1, figsize=(13, 3.8))
    plot(results, axes)
    fig.suptitle("Amit 2021 depth claim on MNIST: satlin, hinge (μ=%g), plain SGD" % results["params"]["mu"],
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "depth_mnist.png", dpi=110)
    plt.close(fig)
    p = _jsonable({k: (dict(v) if isinstance(v, dict) else v) for k, v in results["params"].items()})
    summary = {"params": p, **results["summary"]}
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2))
    (out / "runs.json").write_text(json.dumps(results["runs"]))
    return summary


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--epochs", type=int, help=f"epochs (default {DEFAULTS['epochs']})")
    ap.add_argument("--lr", type=float, help=f"SGD step (default {DEFAULTS['lr']})")
    ap.add_argument("--batch-size", type=int, help=f"minibatch (default {DEFAULTS['batch_size']})")
    ap.add_argument("--n-train", type=int, help="first N training images (default: all 60000)")
    ap.add_argument("--width", type=int, help="hidden width of both nets (default 500)")
    args = EX.parse(ap, argv)
    params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
    for name in ("epochs", "lr", "batch_size", "n_train", "data_dir"):
        v = getattr(args, name)
        if v is not None:
            params[name] = v
    if args.width:
        params["depths"] = {"2 hidden": (784, args.width, args.width, 10),
                            "4 hidden": (784, args.width, args.width, args.width, args.width, 10)}
    out = args.out
    t0 = time.perf_counter()
    results = simulate(params, out=out)
    s = write_outputs(results, out)
    print(f"\nfinal test error [%], mean ± sd over seeds {list(results['params']['seeds'])}, "
          f"{results['params']['epochs']} epoch(s):")
    for depth, per in s["error"].items():
        cells = "  ".join(f"{r.upper()} {v['mean'] * 100:5.2f} ± {v['sd'] * 100:4.2f}" for r, v in per.items())
        gaps = "  ".join(f"{r.upper()}−BP {v['mean'] * 100:+5.2f} ± {v['sd'] * 100:4.2f}"
                         for r, v in s["gap_to_bp"].get(depth, {}).items())
        print(f"  {depth:9s} {cells}   |  {gaps}")
    if s["claim"]:
        print(f"FRFB falls further behind BP with depth: {s['claim']['frfb_gap_grows_with_depth']}; "
              f"URFB closer to BP than FRFB in the deep net: {s['claim']['urfb_closer_to_bp_than_frfb_when_deep']}")
    print(f"wrote {out}/depth_mnist.png, summary.json, runs.json and one folder per run "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
