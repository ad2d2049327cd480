"""Lansdell, Prakash & Kording (2019), Fig. 2: a 784-200-2-200-784 MNIST autoencoder (squared error)
trained by node perturbation (NP), feedback alignment (FA), backprop (BP) and the 'matching' rule
(URFB with ε = 1: ΔR = ΔWᵀ, Amit's updated random feedback — our stand-in for Martinolli's rule).

Panels: (a) train (dashed) and test (solid) loss per evaluation, mean ± sd over seeds; (b) the 2-D
latent activations of test digits coloured by label (first seed), one panel per rule.

Paper (Fig. 2a, mean ± s.e. over 10 runs): FA fails through the 2-unit bottleneck; NP does better
than BP and comparably to ADAM (BP with the Adam optimiser), which begins to overfit; matching ≈ BP.
Hyperparameters there came from random search (not given).  Ours: tanh hidden units, linear output,
batch 32, ``--optimizer sgd`` (plain SGD) or ``adam`` (torch's Adam on every rule's weight update;
NP's feedback matrices are moved by the same optimizer, from ``R.grad = −(η_B/η) ΔR``, so under Adam
the constant η_B/η is normalised away and is not searched).

Tuning (``--search N``): per rule, N random settings (log-uniform: η, and for NP c_h and — with SGD —
η_B/η), each trained ``search_epochs`` on ``search_n_train`` training images and scored by the loss
½‖x̂ − x‖² on ``n_val`` OTHER training images (``_protocol.py``); the lowest validation loss wins.
The chosen settings are trained for ``--seeds`` seeds on ``n_train`` images and evaluated on the
test set.  ``mean_image_loss`` in the summary is the test loss of predicting the mean training
image — what a network gets that sends nothing through the bottleneck.

Run ``python examples/Lansdell_2019/fig2.py [--optimizer sgd|adam] [--search N] [--seeds N]
[--epochs E] [--rules R …] [--quick] [--out DIR] [--data-dir DIR]``.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bridge.app.examples import Example, load_example

NAME = "fig2"
EX = Example(__file__, seeds="count")
P = load_example(Path(__file__).with_name("_protocol.py"))

RULES = ("bp", "fa", "np", "urfb")
OPTIMIZERS = ("sgd", "adam")

DEFAULTS = {
    "sizes": (784, 200, 2, 200, 784),
    "n_train": 20000,
    "n_test": 2000,
    "epochs": 5,
    "batch_size": 32,
    "evals_per_epoch": 2,
    "seed": 0,
    "seeds": 1,
    "data_dir": None,
    "rules": list(RULES),
    "optimizer": "sgd",
    # fixed settings per optimizer (used without a search)
    "settings": {"sgd": {"bp": {"lr": 0.01}, "fa": {"lr": 0.01}, "np": {"lr": 0.01, "c_h": 0.01, "feedback_lr": 2.0},
                         "urfb": {"lr": 0.01}},
                 "adam": {"bp": {"lr": 1e-3}, "fa": {"lr": 1e-3}, "np": {"lr": 1e-3, "c_h": 0.01, "feedback_lr": 1.0},
                          "urfb": {"lr": 1e-3}}},
    # random search: points per rule (0: none), its data and its log-uniform ranges per optimizer
    "search": 0,
    "search_epochs": 1,
    "search_n_train": 10000,
    "n_val": 5000,
    "search_seed": 0,
    "space": {"sgd": {"lr": (1e-3, 0.1), "c_h": (1e-3, 1.0), "feedback_lr": (0.1, 10.0)},
              "adam": {"lr": (1e-4, 1e-2), "c_h": (1e-3, 1.0)}},
}

#: the parameters each rule can search over (those absent from the optimizer's space are skipped)
SEARCHED = {"bp": ("lr",), "fa": ("lr",), "np": ("lr", "c_h", "feedback_lr"), "urfb": ("lr",)}

QUICK = {"n_train": 2000, "n_test": 500, "epochs": 1, "evals_per_epoch": 2, "search_n_train": 1000, "n_val": 500}


def _data(p):
    from bridge.data import load_dataset

    ds = load_dataset("mnist", data_dir=EX.data_dir(p["data_dir"]), n_train=p["n_train"], n_test=p["n_test"])
    # autoencoder: the target is the input; labels kept for the latent plot
    return SimpleNamespace(x_train=ds.x_train, y_train=ds.x_train, x_test=ds.x_test, y_test=ds.x_test,
                           labels_test=ds.y_test)


def _spec(rule: str, s: dict, seed: int, optimizer: str) -> dict:
    spec = {"rule": rule, "lr": s["lr"], "optimizer": optimizer}
    if rule == "np":
        spec["rule_params"] = {"c_h": s["c_h"], "feedback_lr": s["feedback_lr"], "seed": seed}
    if rule == "urfb":
        spec["epsilon"] = 1.0
    return spec


def _train(data, p, runs: dict, *, epochs, seed, evals_per_epoch):
    from bridge.app import run_comparison

    return run_comparison(data, p["sizes"], runs, activation="tanh", output_activation="linear", loss="mse",
                          epochs=epochs, batch_size=p["batch_size"], seed=seed, evals_per_epoch=evals_per_epoch)


def search(data, p) -> dict:
    """Per rule: :func:`_protocol.random_search` scored by the loss on training images held out of the
    search's training part (the test set is not used)."""
    fit, _ = P.validation_split(data, p["n_val"], p["search_n_train"], seed=p["search_seed"])
    space_all = p["space"][p["optimizer"]]
    out = {}
    for rule in p["rules"]:
        space = {k: tuple(space_all[k]) for k in SEARCHED[rule] if k in space_all}

        def score(pt, rule=rule):
            s = {**p["settings"][p["optimizer"]][rule], **pt}
            r = _train(fit, p, {rule: _spec(rule, s, p["search_seed"], p["optimizer"])}, epochs=p["search_epochs"],
                       seed=p["search_seed"], evals_per_epoch=1)
            return r[rule]["history"][-1]["test_loss"]  # the held-out training images

        out[rule] = P.random_search(space, p["search"], score, seed=P.search_seed(p["search_seed"], rule, RULES))
    return out


def _latent(model, x):
    import torch

    with torch.no_grad():  # latent = activity of the 2-unit layer
        h = torch.as_tensor(x)
        for lin, act in list(zip(model.linears, model.activations))[:2]:
            h = act(lin(h))
    return h.numpy().tolist()


def simulate(params: dict | None = None, on_seed=None) -> dict:
    """Optionally search, then train every rule for each seed from the same initial weights;
    ``on_seed(results)`` is called after every seed.  The latent of the first seed is kept in
    ``runs[rule]["latent"]`` (with ``labels``) for the figure."""
    import torch

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    bad = [r for r in p["rules"] if r not in RULES]
    if bad or not p["rules"]:
        raise ValueError(f"rules must be names from {', '.join(RULES)}, got {p['rules']!r}")
    if p["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {p['optimizer']!r}")
    if not isinstance(p["search"], int) or p["search"] < 0:
        raise ValueError(f"search must be an integer ≥ 0 (points per rule; 0: fixed settings), got {p['search']!r}")
    if not isinstance(p["seeds"], int) or p["seeds"] < 1:
        raise ValueError(f"seeds must be an integer ≥ 1, got {p['seeds']!r}")
    data = _data(p)
    t0 = time.perf_counter()
    found = search(data, p) if p["search"] else None
    fixed = p["settings"][p["optimizer"]]
    settings = {r: ({**fixed[r], **found[r]["best_params"]} if found else dict(fixed[r])) for r in p["rules"]}
    mean_image = float(0.5 * ((data.x_test - data.x_train.mean(0)) ** 2).sum(1).mean())
    n_lat = min(1000, len(data.x_test))
    out = {"params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}, "search": found,
           "settings": settings, "mean_image_loss": mean_image, "seeds": [], "per_seed": [], "runs": {}}
    for seed in range(p["seed"], p["seed"] + p["seeds"]):
        res = _train(data, p, {r: _spec(r, settings[r], seed, p["optimizer"]) for r in p["rules"]},
                     epochs=p["epochs"], seed=seed, evals_per_epoch=p["evals_per_epoch"])
        out["seeds"].append(seed)
        out["per_seed"].append({label: {k: [row[k] for row in r["history"]] for k in ("epoch", "train_loss", "test_loss")}
                                for label, r in res.items()})
        if len(out["seeds"]) == 1:
            for label, r in res.items():
                out["runs"][label] = {"latent": _latent(r["model"], data.x_test[:n_lat]),
                                      "labels": np.asarray(data.labels_test[:n_lat]).tolist()}
        out["summary"] = {r: {"test_loss": P.summarise([ps[r]["test_loss"][-1] for ps in out["per_seed"]]),
                              "train_loss": P.summarise([ps[r]["train_loss"][-1] for ps in out["per_seed"]]),
                              "best_test_loss": P.summarise([min(ps[r]["test_loss"]) for ps in out["per_seed"]])}
                          for r in p["rules"]}
        out["seconds"] = time.perf_counter() - t0
        if on_seed is not None:
            on_seed(out)
    return out


def plot(results: dict, axes=None):
    import matplotlib.pyplot as plt

    from bridge.app.plots import mean_sd_curves

    rules = list(results["per_seed"][0])
    if axes is None:
        _, axes = plt.subplots(1, 1 + len(rules), figsize=(4 * (1 + len(rules)), 3.6))
    ax, per_seed = axes[0], results["per_seed"]
    for i, label in enumerate(rules):
        ep = np.asarray(per_seed[0][label]["epoch"])
        m, sd = mean_sd_curves([ps[label]["test_loss"] for ps in per_seed])
        ax.plot(ep, m, color=f"C{i}", label=label)
        ax.fill_between(ep, m - sd, m + sd, color=f"C{i}", alpha=0.2)
        m, _ = mean_sd_curves([ps[label]["train_loss"] for ps in per_seed])
        ax.plot(ep[1:], m[1:], "--", color=f"C{i}")
    ax.axhline(results["mean_image_loss"], color="grey", lw=0.8, ls=":", label="mean image")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (½‖x̂ − x‖²)")
    ax.set_yscale("log")
    ax.set_title(f"{results['params']['optimizer']}, mean ± sd, n = {len(per_seed)}", fontsize=9)
    ax.legend(fontsize=8)
    for ax, label in zip(axes[1:], rules):
        r = results["runs"].get(label)
        if r and "latent" in r:
            z = np.asarray(r["latent"])
            ax.scatter(z[:, 0], z[:, 1], c=r["labels"], cmap="tab10", s=3)
        ax.set_title(f"latent: {label} (seed {results['seeds'][0]})", fontsize=9)
    return axes


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="sgd (default) or adam, for every rule")
    ap.add_argument("--search", type=int, default=None, metavar="N",
                    help="random-search N settings per rule on a validation split of the training set (default: fixed settings)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the final runs")
    ap.add_argument("--search-epochs", type=int, default=None, help="epochs of each search run")
    ap.add_argument("--rules", nargs="+", default=None, metavar="R", help=f"rules to run (default: {' '.join(RULES)})")
    a = EX.parse(ap, argv)
    for name in ("search", "epochs", "search_epochs"):
        v, lo = getattr(a, name), 0 if name == "search" else 1
        if v is not None and v < lo:
            ap.error(f"--{name.replace('_', '-')} must be ≥ {lo}, got {v}")
    if a.rules is not None and (set(a.rules) - set(RULES) or len(set(a.rules)) != len(a.rules)):
        ap.error(f"--rules must be distinct names from {', '.join(RULES)}, got {' '.join(a.rules)}")
    params = {**(QUICK if a.quick else {}), **EX.seed_params(a), "data_dir": a.data_dir}
    for name in ("optimizer", "search", "epochs", "search_epochs", "rules"):
        if getattr(a, name) is not None:
            params[name] = getattr(a, name)

    def save(res):
        n = 1 + len(res["per_seed"][0])
        EX.figure(a.out / f"{NAME}.png", plot, res, ncols=n, figsize=(4 * n, 3.6), constrained_layout=True)
        slim = {**res, "runs": {}}  # the latent is kept out of the JSON
        EX.save(a.out, slim, name=f"{NAME}.json")
        print(f"seed {res['seeds'][-1]} done ({res['seconds']:.0f} s)", flush=True)

    res = simulate(params, on_seed=save)
    P.print_search(res["search"], "loss", digits=3)
    print(f"mean-image test loss {res['mean_image_loss']:.3f}")
    for label, s in res["summary"].items():
        t, b = s["test_loss"], s["best_test_loss"]
        print(f"{label:>6} (n = {t['n']}): test loss {t['mean']:.3f} ± {t['sd']:.3f}  (best {b['mean']:.3f} ± {b['sd']:.3f})  "
              f"train loss {s['train_loss']['mean']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
