"""Lansdell, Prakash & Kording (2019), Fig. 1: node perturbation (NP) learns the feedback of a
784-50-20-10 MNIST network, compared with feedback alignment (FA) and backprop (BP).

NP: every minibatch runs one extra noisy pass (``h̃ = g(a) + c_h ξ`` on both hidden layers), forms
``λ̂ = (L̃ − L) ξ / c_h`` (§2, the estimator of eq. 3) and takes one least-squares SGD step on
``R_l = (B^l)ᵀ`` toward ``−λ̂`` (our sign: δ = −∂L/∂a, see plasticity.learned_feedback), concurrently
with ``ΔW = η δ hᵀ``.

Panels (per evaluation, layers 2 and 3 — the feedback matrices that carry signals; mean ± sd over
seeds):  A  relative error ‖R_l − W_lᵀ‖/‖W_l‖;  B  angle between the synthetic and the true teaching
signal (on a 256-example probe);  C  sign congruence of R_l and W_lᵀ;  D  test error.

Paper: NP's relative error and angle fall below FA's, its sign congruence is higher, and its test
error approaches BP's ("close to 3 %"); curves are mean ± s.e. over 5 runs and the hyperparameters
"found through random search" (values not given).  Ours: tanh hidden units, linear outputs, squared
error on one-hot targets, plain SGD, batch 32.

Tuning (``--search N``): per rule, N random settings (log-uniform: η for every rule, and for NP also
c_h and η_B/η), each trained ``search_epochs`` on ``search_n_train`` training images and scored by the
error on ``n_val`` OTHER training images (see ``_protocol.py``); the lowest validation error wins.
The chosen settings are then trained on the whole training set for ``--seeds`` seeds (seed s: the
same initial W, R, minibatch order and NP noise for every rule) and evaluated on the test set.
Without ``--search`` the fixed settings in ``DEFAULTS["settings"]`` are used.

Run ``python examples/Lansdell_2019/fig1.py [--search N] [--seeds N] [--epochs E] [--quick]
[--out DIR] [--data-dir DIR]``.
"""

from __future__ import annotations

import time
from pathlib import Path

from bridge.app.examples import Example, load_example

NAME = "fig1"
EX = Example(__file__, seeds="count")
P = load_example(Path(__file__).with_name("_protocol.py"))

RULES = ("bp", "fa", "np")

DEFAULTS = {
    "sizes": (784, 50, 20, 10),
    "n_train": 60000,
    "n_test": 10000,
    "epochs": 3,
    "batch_size": 32,
    "evals_per_epoch": 2,
    "seed": 0,
    "seeds": 1,
    "data_dir": None,
    "rules": list(RULES),
    # fixed settings (used without a search)
    "settings": {"bp": {"lr": 0.1}, "fa": {"lr": 0.1}, "np": {"lr": 0.1, "c_h": 0.1, "feedback_lr": 2.0}},
    # random search: points per rule (0: none), its data and its log-uniform ranges
    "search": 0,
    "search_epochs": 1,
    "search_n_train": 20000,
    "n_val": 10000,
    "search_seed": 0,
    "space": {"lr": (0.01, 1.0), "c_h": (0.001, 1.0), "feedback_lr": (0.1, 10.0)},
}

#: the parameters each rule searches over (the rest of ``space`` does not apply to it)
SEARCHED = {"bp": ("lr",), "fa": ("lr",), "np": ("lr", "c_h", "feedback_lr")}

QUICK = {"n_train": 3000, "n_test": 1000, "epochs": 1, "evals_per_epoch": 3,
         "search_n_train": 1500, "n_val": 1000}

CURVES = ("epoch", "test_error", "test_loss", "rel_dist", "angle_bp_deg", "sign_congruence")
FINAL = ("test_error", "rel_dist", "angle_bp_deg", "sign_congruence")


def _data(p):
    from bridge.data import load_dataset

    return load_dataset("mnist", data_dir=EX.data_dir(p["data_dir"]), n_train=p["n_train"], n_test=p["n_test"])


def _spec(rule: str, s: dict, seed: int) -> dict:
    spec = {"rule": rule, "lr": s["lr"]}
    if rule == "np":
        spec["rule_params"] = {"c_h": s["c_h"], "feedback_lr": s["feedback_lr"], "seed": seed}
    return spec


def _train(data, p, runs: dict, *, epochs, seed, evals_per_epoch):
    from bridge.app import run_comparison

    return run_comparison(data, p["sizes"], runs, activation="tanh", output_activation="linear", loss="mse",
                          epochs=epochs, batch_size=p["batch_size"], seed=seed, evals_per_epoch=evals_per_epoch)


def search(data, p) -> dict:
    """Per rule: :func:`_protocol.random_search` scored by the validation error after ``search_epochs``
    (the validation images are held out of the training set; the test set is not used)."""
    fit, _ = P.validation_split(data, p["n_val"], p["search_n_train"], seed=p["search_seed"])
    out = {}
    for rule in p["rules"]:
        space = {k: tuple(p["space"][k]) for k in SEARCHED[rule]}

        def score(pt, rule=rule):
            r = _train(fit, p, {rule: _spec(rule, pt, p["search_seed"])}, epochs=p["search_epochs"],
                       seed=p["search_seed"], evals_per_epoch=1)
            return r[rule]["history"][-1]["test_error"]  # the held-out training images

        out[rule] = P.random_search(space, p["search"], score, seed=P.search_seed(p["search_seed"], rule, RULES))
    return out


def simulate(params: dict | None = None, on_seed=None) -> dict:
    """Optionally search, then train every rule for each seed on the same data and initial weights;
    ``on_seed(results)`` is called with the results so far after every seed."""
    import torch

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    bad = [r for r in p["rules"] if r not in RULES]
    if bad or not p["rules"]:
        raise ValueError(f"rules must be names from {', '.join(RULES)}, got {p['rules']!r}")
    if not isinstance(p["search"], int) or p["search"] < 0:
        raise ValueError(f"search must be an integer ≥ 0 (points per rule; 0: fixed settings), got {p['search']!r}")
    if not isinstance(p["seeds"], int) or p["seeds"] < 1:
        raise ValueError(f"seeds must be an integer ≥ 1, got {p['seeds']!r}")
    data = _data(p)
    t0 = time.perf_counter()
    found = search(data, p) if p["search"] else None
    settings = {r: ({**p["settings"][r], **found[r]["best_params"]} if found else dict(p["settings"][r]))
                for r in p["rules"]}
    seeds = list(range(p["seed"], p["seed"] + p["seeds"]))
    out = {"params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}, "search": found,
           "settings": settings, "seeds": [], "per_seed": []}
    for seed in seeds:
        res = _train(data, p, {r: _spec(r, settings[r], seed) for r in p["rules"]}, epochs=p["epochs"], seed=seed,
                     evals_per_epoch=p["evals_per_epoch"])
        out["seeds"].append(seed)
        out["per_seed"].append({label: {k: [row.get(k) for row in r["history"]] for k in CURVES}
                                for label, r in res.items()})
        out["summary"] = {r: {k: P.summarise([ps[r][k][-1] for ps in out["per_seed"]]) for k in FINAL}
                          for r in p["rules"]}
        out["seconds"] = time.perf_counter() - t0
        if on_seed is not None:
            on_seed(out)
    return out


def plot(results: dict, axes=None):
    import matplotlib.pyplot as plt
    import numpy as np

    from bridge.app.plots import mean_sd_curves

    if axes is None:
        _, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [("rel_dist", "‖R − Wᵀ‖ / ‖W‖"), ("angle_bp_deg", "angle to BP signal (°)"),
              ("sign_congruence", "sign congruence"), ("test_error", "test error")]
    per_seed, n = results["per_seed"], len(results["per_seed"])
    for i, label in enumerate(per_seed[0]):
        col = f"C{i}"
        ep = np.asarray(per_seed[0][label]["epoch"])
        for ax, (key, title) in zip(axes, panels):
            first = per_seed[0][label][key][0]
            if first is None:
                continue
            layers = ((0, "-"), (1, "--")) if isinstance(first, list) else ((None, "-"),)
            for l, ls in layers:  # per layer: layer 2 solid, layer 3 dashed
                rows = [[(v[l] if l is not None else v) if v is not None else np.nan for v in ps[label][key]]
                        for ps in per_seed]
                m, sd = mean_sd_curves(rows)
                name = label if l is None else f"{label} L{l + 2}"
                ax.plot(ep, m, ls, color=col, label=name if (key == "rel_dist" or l in (None, 0)) else None)
                ax.fill_between(ep, m - sd, m + sd, color=col, alpha=0.15)
            ax.set_title(f"{title} (mean ± sd, n = {n})", fontsize=9)
            ax.set_xlabel("epoch")
    axes[-1].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[-1].legend(fontsize=7)
    return axes


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--search", type=int, default=None, metavar="N",
                    help="random-search N settings per rule on a validation split of the training set (default: fixed settings)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the final runs")
    ap.add_argument("--search-epochs", type=int, default=None, help="epochs of each search run")
    a = EX.parse(ap, argv)
    for name in ("search", "epochs", "search_epochs"):
        v, lo = getattr(a, name), 0 if name == "search" else 1
        if v is not None and v < lo:
            ap.error(f"--{name.replace('_', '-')} must be ≥ {lo}, got {v}")
    params = {**(QUICK if a.quick else {}), **EX.seed_params(a), "data_dir": a.data_dir}
    for name in ("search", "epochs", "search_epochs"):
        if getattr(a, name) is not None:
            params[name] = getattr(a, name)

    def save(res):
        EX.save(a.out, res, plot, name=f"{NAME}.json", ncols=4, figsize=(16, 3.6), constrained_layout=True)
        print(f"seed {res['seeds'][-1]} done ({res['seconds']:.0f} s)", flush=True)

    res = simulate(params, on_seed=save)
    P.print_search(res["search"], "error")
    fmt = lambda m: "—" if m is None else (" / ".join(fmt(x) for x in m) if isinstance(m, list)  # noqa: E731
                                           else f"{m['mean']:.4g} ± {m['sd']:.2g}")
    for label, s in res["summary"].items():
        print(f"{label:>4} (n = {s['test_error']['n']}): test error {fmt(s['test_error'])}  rel_dist {fmt(s['rel_dist'])}  "
              f"angle {fmt(s['angle_bp_deg'])}  sign {fmt(s['sign_congruence'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
