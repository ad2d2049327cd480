"""Amit (2021), three of the §4 results at a small budget on MNIST (dense nets):

1. **BP-softmax vs BP-hinge** (experiments list, item 1: "With regular back-propagation (BP) hinge
   loss performs slightly worse than the softmax loss but results are comparable"; Fig. 5 BP vs BP-H).
   Softmax: cross-entropy of ``softmax(x_L)`` (§3.2); hinge: the multi-class hinge of eq. 4–6 with
   its local output signal (μ = 1; the paper does not give its μ).
2. **W–R correlation during training** (item 5 and Figs. 10–11: "the correlation between the two sets
   of weights increases with iteration"; the top layer correlates highly for both URFB and FRFB,
   URFB much more than FRFB in the lower layers).  Pearson correlation of the entries of ``W_l`` and
   ``R_lᵗ`` per layer that has a feedback matrix (layers 2 … L; the first layer sends nothing
   down), after every evaluation.  With 50 % connectivity it is taken over the entries present in
   both W_l and R_lᵗ (the reciprocal pairs, whose Hebbian increments are equal under URFB).
3. **50 % random connectivity of W and R** (§4: "pruning the forward and backward connections
   randomly by 50 %"; Fig. 5's "50 %" bars): separate random masks on every W and R, fixed for the
   run; URFB-50 and FRFB-50 against their dense versions.

Setting (as ``depth_mnist.py``): saturated linear hidden units ``clip(a, −1, 1)`` with the eq. 3
gate, linear outputs, biases, plain minibatch SGD (no momentum, no weight decay), pixels / 255,
W, R, b ~ U(±0.07).  URFB: ε = 1 (``ΔR = ε ΔWᵗ``, §3.1); FRFB: R fixed.  Random-feedback rules
all use the hinge, as in the paper.  Budget: ``n_train`` images × ``epochs`` (the paper: CIFAR,
conv nets, 1000 epochs); every condition of a seed starts from the same seed's draws.

Run ``python examples/Amit_2021/results_mnist.py [--quick] [--seeds S …] [--epochs E] [--n-train N]``.
Data: ``--data-dir`` or ``CREDIT_DATA_DIR`` (a folder holding ``mnist/`` or the IDX files).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bridge.app.examples import Example, load_example
from bridge.app.plots import mean_sd, mean_sd_curves

NAME = "results_mnist"
EX = Example(__file__, seeds="list")

#: condition → TrainConfig overrides (rule, loss, connectivity)
CONDITIONS = {
    "bp-softmax": {"rule": "bp", "loss": "ce"},
    "bp-hinge": {"rule": "bp", "loss": "hinge"},
    "urfb": {"rule": "urfb", "loss": "hinge"},
    "frfb": {"rule": "frfb", "loss": "hinge"},
    "urfb-50": {"rule": "urfb", "loss": "hinge", "sparsity": 0.5, "feedback_sparsity": 0.5},
    "frfb-50": {"rule": "frfb", "loss": "hinge", "sparsity": 0.5, "feedback_sparsity": 0.5},
}

S = load_example(Path(__file__).with_name("_settings.py"))

DEFAULTS = {
    "sizes": (784, 500, 500, 10),
    "conditions": list(CONDITIONS),
    "seeds": (0, 1, 2),
    "epochs": 3,
    **S.MNIST_TRAINING,  # lr 0.05, batch 100, μ = 1, ε = 1, W and R ~ U(±0.07)
    "n_train": 20000,
    "n_test": 10000,
    "evals_per_epoch": 2,
    "data_dir": None,
}

QUICK = {"sizes": (784, 64, 64, 10), "seeds": (0,), "epochs": 1, "batch_size": 20, "n_train": 2000,
         "n_test": 1000, "evals_per_epoch": 4}


def _check(p: dict) -> None:
    bad = [c for c in p["conditions"] if c not in CONDITIONS]
    if bad or not p["conditions"]:
        raise ValueError(f"conditions must be a non-empty list among {', '.join(CONDITIONS)}, got {p['conditions']!r}")


def wr_correlation(model) -> list:
    """Pearson correlation of ``W_l`` and ``R_lᵗ`` for every layer with a feedback matrix (Figs. 10–11),
    over the entries present in both (all entries when dense); ``None`` where undefined."""
    import torch

    from bridge.network import feedback_layers

    out = []
    for l, lin in enumerate(feedback_layers(model)):
        if l == 0 or lin.feedback is None:
            continue
        W, R = lin.weight.detach().double(), lin.feedback.detach().double().T
        keep = torch.ones_like(W)
        if lin.weight_mask is not None:
            keep = keep * lin.weight_mask.double()
        if lin.feedback_mask is not None:
            keep = keep * lin.feedback_mask.double().T
        w, r = W[keep > 0].numpy(), R[keep > 0].numpy()
        ok = w.size > 1 and w.std() > 0 and r.std() > 0
        out.append(float(np.corrcoef(w, r)[0, 1]) if ok else None)
    return out


def simulate(params: dict | None = None, *, progress=None) -> dict:
    """Train every (condition, seed); per run the test-error and W–R correlation curves."""
    import torch

    from bridge.app.runs import TrainConfig, build_model
    from bridge.data import load_dataset
    from bridge.losses import TeachingLoss
    from bridge.train import train
    from plasticity import rule_parameters

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    _check(p)
    data_dir = EX.data_dir(p["data_dir"])
    data = load_dataset("mnist", data_dir=data_dir, n_train=p["n_train"], n_test=p["n_test"])
    runs = {}
    for cond in p["conditions"]:
        over = dict(CONDITIONS[cond])
        rows = {"epoch": None, "test_error": [], "corr": [], "alignment_deg": []}
        for seed in p["seeds"]:
            t0 = time.perf_counter()
            cfg = TrainConfig(
                task="mnist", sizes=tuple(p["sizes"]), activation="satlin", output_activation="linear",
                mu=p["mu"] if over["loss"] == "hinge" else None,
                epsilon=p["epsilon"] if "epsilon" in rule_parameters(over["rule"]) else None,
                lr=p["lr"], epochs=p["epochs"], batch_size=p["batch_size"], weight_scale=p["weight_scale"],
                feedback_scale=p["feedback_scale"], seed=int(seed), n_train=p["n_train"], n_test=p["n_test"],
                evals_per_epoch=p["evals_per_epoch"], quiet=True, **over,
            ).resolved()
            model = build_model(cfg, data.n_in, data.n_out)
            loss = TeachingLoss(cfg.loss, **({"mu": cfg.mu} if cfg.mu is not None else {}))
            corr = []
            hist = train(model, data, loss, cfg,
                         log=lambda row, corr=corr, model=model: corr.append(wr_correlation(model)))
            assert len(corr) == len(hist)  # train() logs every evaluation, the untrained one included
            rows["epoch"] = [r["epoch"] for r in hist]
            rows["test_error"].append([r["test_error"] for r in hist])
            rows["corr"].append(corr)
            rows["alignment_deg"].append([r.get("alignment_deg") for r in hist])
            if progress is not None:
                c = corr[-1]
                progress(f"{NAME}: {cond:10s} seed {seed}: test error {hist[0]['test_error']:.3f} -> "
                         f"{hist[-1]['test_error']:.4f}" + (f"  W–R corr {[round(x, 2) for x in c]}" if c else "")
                         + f" ({time.perf_counter() - t0:.0f} s)")
        runs[cond] = rows
    out = {"params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}, "runs": runs}
    out["summary"] = summarize(out)
    return out


def summarize(results: dict) -> dict:
    """Final test error per condition (mean ± sd over seeds), paired gaps, final W–R correlations."""
    runs, seeds = results["runs"], results["params"]["seeds"]
    final = {c: [row[-1] for row in r["test_error"]] for c, r in runs.items()}
    s = {"test_error": {c: mean_sd(v) for c, v in final.items()}, "paired": {}, "corr_final": {}, "corr_first": {}}
    for a, b in (("bp-hinge", "bp-softmax"), ("urfb-50", "urfb"), ("frfb-50", "frfb"), ("frfb", "urfb"),
                 ("urfb", "bp-hinge")):
        if a in final and b in final:
            d = [x - y for x, y in zip(final[a], final[b])]
            s["paired"][f"{a} − {b}"] = {**mean_sd(d), "n_positive": sum(x > 0 for x in d), "seeds": list(seeds)}
    for c, r in runs.items():
        rows = [row for row in r["corr"] if row and row[-1]]
        if rows:
            n_layers = len(rows[0][-1])
            s["corr_final"][c] = [mean_sd([row[-1][l] for row in rows]) for l in range(n_layers)]
            s["corr_first"][c] = [mean_sd([row[0][l] for row in rows]) for l in range(n_layers)]
    return s


COLORS = {"bp-softmax": "k", "bp-hinge": "0.5", "urfb": "tab:blue", "frfb": "tab:red",
          "urfb-50": "tab:cyan", "frfb-50": "tab:orange"}


def plot(results: dict, axes) -> None:
    """Test error vs epoch (mean ± sd) for every condition; W–R correlation vs epoch per layer."""
    ax_e, ax_c = axes
    for c, r in results["runs"].items():
        ep = np.asarray(r["epoch"])
        m, s = mean_sd_curves(np.asarray(r["test_error"], dtype=float) * 100)
        ax_e.plot(ep, m, color=COLORS[c], label=c)
        ax_e.fill_between(ep, m - s, m + s, color=COLORS[c], alpha=0.2, lw=0)
        rows = [row for row in r["corr"] if row and row[-1]]
        if not rows:
            continue
        n_layers = len(rows[-1][-1])
        for l, ls in zip(range(n_layers), ("--", "-", ":", "-.")):
            a = np.asarray([[np.nan if (v is None or v[l] is None) else v[l] for v in row] for row in rows], dtype=float)
            cm, _ = mean_sd_curves(a)
            ax_c.plot(ep, cm, ls, color=COLORS[c], label=f"{c} layer {l + 2}")
    ax_e.set(xlabel="epoch", ylabel="test error [%]", yscale="log", title="MNIST, dense satlin net")
    ax_e.legend(fontsize=7, frameon=False)
    ax_c.set(xlabel="epoch", ylabel="corr(W_l, R_lᵗ)", ylim=(-0.1, 1.0),
             title="W–R correlation (Figs. 10–11)")
    ax_c.legend(fontsize=6, frameon=False, ncol=2)


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--epochs", type=int, help=f"epochs (default {DEFAULTS['epochs']})")
    ap.add_argument("--n-train", type=int, help=f"first N training images (default {DEFAULTS['n_train']})")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), help="conditions to run (default: all)")
    a = EX.parse(ap, argv)
    params = {**(QUICK if a.quick else {}), **EX.seed_params(a), "data_dir": a.data_dir}
    for k in ("epochs", "n_train", "conditions"):
        if getattr(a, k) is not None:
            params[k] = getattr(a, k)
    t0 = time.perf_counter()
    res = simulate(params, progress=lambda s: print(s, flush=True))
    res["seconds"] = time.perf_counter() - t0
    EX.save(a.out, res, plot, ncols=2, figsize=(11, 4), constrained_layout=True)
    s = res["summary"]
    for c, v in s["test_error"].items():
        corr = s["corr_final"].get(c)
        cs = "" if not corr else "  W–R corr " + ", ".join(f"{x['mean']:.2f}" for x in corr)
        print(f"{c:10s} test error {v['mean'] * 100:5.2f} ± {v['sd'] * 100:4.2f} % (n = {v['n']}){cs}")
    for k, v in s["paired"].items():
        print(f"{k:22s} {v['mean'] * 100:+5.2f} ± {v['sd'] * 100:4.2f} points ({v['n_positive']}/{v['n']} seeds > 0)")
    print(f"wrote {a.out / 'results.json'} and {a.out / (NAME + '.png')} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
