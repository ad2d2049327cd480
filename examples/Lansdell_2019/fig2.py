"""Lansdell, Prakash & Kording (2019), Fig. 2: a 784-200-2-200-784 MNIST autoencoder (squared error)
trained by node perturbation (NP), feedback alignment (FA), backprop (BP) and the 'matching' rule
(URFB with ε = 1: ΔR = ΔWᵀ, Amit's updated random feedback — our stand-in for Martinolli's rule).

Panels: (a) train (dashed) and test (solid) loss per evaluation; (b) the 2-D latent activations of
test digits coloured by label, one panel per rule.

Paper: FA fails through the 2-unit bottleneck; NP does as well as or better than BP; matching ≈ BP.
ADAM is not run here (the loop is plain SGD for every rule).  Hyperparameters there came from random
search; ours: tanh hidden units, linear output, plain SGD, η and c_h below.

Run ``python examples/Lansdell_2019/fig2.py [--quick] [--out DIR] [--data-dir DIR]``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from bridge.app.examples import Example

NAME = "fig2"
EX = Example(__file__, seeds="single")

DEFAULTS = {
    "sizes": (784, 200, 2, 200, 784),
    "n_train": 20000,
    "n_test": 2000,
    "epochs": 5,
    "batch_size": 32,
    "lr": 0.01,
    "c_h": 0.01,
    "feedback_lr": 2.0,
    "evals_per_epoch": 2,
    "seed": 0,
    "data_dir": None,
    "rules": ["bp", "fa", "np", "urfb"],
}

QUICK = {"n_train": 2000, "n_test": 500, "epochs": 1, "evals_per_epoch": 2}


def _data(p):
    from bridge.data import load_dataset

    ds = load_dataset("mnist", data_dir=EX.data_dir(p["data_dir"]), n_train=p["n_train"], n_test=p["n_test"])
    # autoencoder: the target is the input; labels kept for the latent plot
    return SimpleNamespace(x_train=ds.x_train, y_train=ds.x_train, x_test=ds.x_test, y_test=ds.x_test,
                           labels_test=ds.y_test)


def simulate(params: dict | None = None) -> dict:
    import torch

    from bridge.app import run_comparison

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    data = _data(p)
    specs = {
        "bp": {"rule": "bp", "lr": p["lr"]},
        "fa": {"rule": "fa", "lr": p["lr"]},
        "np": {"rule": "np", "lr": p["lr"], "rule_params": {"c_h": p["c_h"], "feedback_lr": p["feedback_lr"]}},
        "urfb": {"rule": "urfb", "lr": p["lr"], "epsilon": 1.0},
    }
    runs = {r: specs[r] for r in p["rules"]}
    t0 = time.perf_counter()
    res = run_comparison(data, p["sizes"], runs, activation="tanh", output_activation="linear", loss="mse",
                             epochs=p["epochs"], batch_size=p["batch_size"], seed=p["seed"],
                             evals_per_epoch=p["evals_per_epoch"])
    out = {"params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}, "runs": {},
           "seconds": time.perf_counter() - t0}
    n_lat = min(1000, len(data.x_test))
    x = torch.as_tensor(data.x_test[:n_lat])
    for label, r in res.items():
        m = r["model"]
        with torch.no_grad():  # latent = activity of the 2-unit layer
            h = x
            for lin, act in list(zip(m.linears, m.activations))[:2]:
                h = act(lin(h))
        hist = r["history"]
        out["runs"][label] = {"epoch": [row["epoch"] for row in hist],
                              "train_loss": [row["train_loss"] for row in hist],
                              "test_loss": [row["test_loss"] for row in hist],
                              "latent": h.numpy().tolist(), "labels": np.asarray(data.labels_test[:n_lat]).tolist()}
    out["summary"] = {k: {"test_loss": v["test_loss"][-1], "train_loss": v["train_loss"][-1]}
                      for k, v in out["runs"].items()}
    return out


def plot(results: dict, axes=None):
    import matplotlib.pyplot as plt

    runs = results["runs"]
    if axes is None:
        _, axes = plt.subplots(1, 1 + len(runs), figsize=(4 * (1 + len(runs)), 3.6))
    ax = axes[0]
    for i, (label, r) in enumerate(runs.items()):
        ax.plot(r["epoch"], r["test_loss"], color=f"C{i}", label=label)
        ax.plot(r["epoch"][1:], r["train_loss"][1:], "--", color=f"C{i}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (½‖x̂ − x‖²)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    for ax, (label, r) in zip(axes[1:], runs.items()):
        z = np.asarray(r["latent"])
        ax.scatter(z[:, 0], z[:, 1], c=r["labels"], cmap="tab10", s=3)
        ax.set_title(f"latent: {label}", fontsize=9)
    return axes


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    a = EX.parse(ap, argv)
    res = simulate({**(QUICK if a.quick else {}), **EX.seed_params(a), "data_dir": a.data_dir})
    n = 1 + len(res["runs"])
    EX.figure(a.out / f"{NAME}.png", plot, res, ncols=n, figsize=(4 * n, 3.6), constrained_layout=True)
    slim = {**res, "runs": {k: {kk: vv for kk, vv in v.items() if kk not in ("latent", "labels")}
                            for k, v in res["runs"].items()}}
    EX.save(a.out, slim, name=f"{NAME}.json")
    for label, s in res["summary"].items():
        print(f"{label:>6}: test loss {s['test_loss']:.4f}  train loss {s['train_loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
