"""Lillicrap et al. (2016), Fig. 4: with small initial weights FA behaves like pseudobackprop.

Task 1 (30–20–10 linear network, y* = T x) trained by feedback alignment with the elements of
W_0 and W drawn from U(−ω, ω) for the paper's ω = 0.0001 … 0.25, B ~ U(−0.5, 0.5), online
learning (batch size 1) with η = 10⁻³ as in the Methods.  For each ω we record the test NSE
(panel a) and the angle of FA's hidden update ``Δh_FA = B e`` to backprop's ``Wᵀ e`` (panel b)
and to pseudobackprop's ``W⁺ e`` (panel c), measured on a fixed probe of 256 test examples
(the probe's signals flattened into one vector).

The paper's claim (Supplementary Proof 2): when the weights start near 0, W comes to act like
a local pseudoinverse of B, so ``Δh_FA ∠ Δh_PBP`` quickly falls below ``Δh_FA ∠ Δh_BP``.  The
summary reports, per ω, both angles late in training (last quarter of the evaluations) and the
number of examples after which the PBP angle stays below the BP angle (see :func:`summarize`).

Run ``python examples/Lillicrap_2016/fig4.py [--quick] [--seeds N] [--out DIR]``.
"""

from __future__ import annotations

import time

import numpy as np

from bridge.app.examples import Example

NAME = "fig4"
EX = Example(__file__, seeds="count")

DEFAULTS = {
    "omegas": [0.0001, 0.001, 0.01, 0.05, 0.1, 0.125, 0.15, 0.2, 0.25],  # Fig. 4 legend
    "seed": 0,
    "seeds": 2,
    "epochs": 6,            # 6 × 1000 examples; η = 1e-3 is 5× slower than Fig. 1's η
    "n_train": 1000,
    "n_test": 500,
    "lr": 1e-3,             # Methods: "the learning rate for the runs was set to η = 10⁻³" (batch 1)
    "feedback_scale": 0.5,  # B ~ U(−0.5, 0.5) as in task 1
    "evals_per_epoch": 20,
}

QUICK = {"omegas": [0.001, 0.25], "seeds": 1, "epochs": 2, "n_train": 300, "n_test": 200,
         "evals_per_epoch": 5}


def simulate(params: dict | None = None, *, progress=None) -> dict:
    """Train FA for every ω and seed; return NSE and angle curves (one row per seed) and a summary."""
    import torch

    from bridge.app.runs import TrainConfig, run_experiment

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    runs = []
    for omega in p["omegas"]:
        curves = {"omega": float(omega), "examples": None, "nse": [], "angle_bp_deg": [], "angle_pbp_deg": []}
        for seed in range(int(p["seed"]), int(p["seed"]) + int(p["seeds"])):
            t0 = time.perf_counter()
            cfg = TrainConfig(
                task="lillicrap-linear", rule="fa", seed=seed, epochs=p["epochs"], lr=p["lr"], batch_size=1,
                weight_scale=float(omega), feedback_scale=p["feedback_scale"], n_train=p["n_train"],
                n_test=p["n_test"], evals_per_epoch=p["evals_per_epoch"], quiet=True,
            )
            h = run_experiment(cfg, write=False)["history"]
            curves["examples"] = [r["epoch"] * p["n_train"] for r in h]
            curves["nse"].append([r["test_nse"] for r in h])
            curves["angle_bp_deg"].append([r["angle_bp_deg"][0] for r in h])
            curves["angle_pbp_deg"].append([r["angle_pbp_deg"][0] for r in h])
            if progress is not None:
                progress(f"{NAME}: omega {omega:g} seed {seed}: NSE {h[-1]['test_nse']:.2e}, "
                         f"angles to BP/PBP at the end {h[-1]['angle_bp_deg'][0]:.0f}°/{h[-1]['angle_pbp_deg'][0]:.0f}° "
                         f"({time.perf_counter() - t0:.1f} s)")
        runs.append(curves)
    out = {"params": p, "runs": runs}
    out["summary"] = summarize(out)
    return out


def summarize(results: dict) -> list[dict]:
    """Per ω (mean over seeds): both angles late in training, and when FA starts to prefer PBP.

    * ``angle_bp_deg_late`` / ``angle_pbp_deg_late``: mean over the last quarter of the evaluations;
    * ``examples_pbp_below_bp``: the first evaluation from which on ``FA∠PBP < FA∠BP`` at every
      later evaluation (``None`` if that never happens; a seed that never crosses is left out of
      the mean and counted in ``n_crossed``);
    * ``fraction_pbp_smaller``: fraction of all evaluations after the first with ``FA∠PBP < FA∠BP``.
    """
    rows = []
    for c in results["runs"]:
        ex = np.asarray(c["examples"], dtype=float)
        nse = np.asarray(c["nse"], dtype=float)
        abp = np.asarray(c["angle_bp_deg"], dtype=float)
        apbp = np.asarray(c["angle_pbp_deg"], dtype=float)
        n_eval = abp.shape[1]
        late = slice(max(1, n_eval - max(1, n_eval // 4)), n_eval)
        crossings = []
        for k in range(abp.shape[0]):
            below = apbp[k, 1:] < abp[k, 1:]
            # last evaluation at which PBP's angle was not the smaller one
            not_below = np.nonzero(~below)[0]
            first = 0 if not_below.size == 0 else not_below[-1] + 1
            if first < below.size:
                crossings.append(float(ex[1:][first]))
        rows.append({
            "omega": c["omega"], "n_seeds": int(abp.shape[0]),
            "angle_bp_deg_late": float(np.nanmean(abp[:, late])),
            "angle_pbp_deg_late": float(np.nanmean(apbp[:, late])),
            "examples_pbp_below_bp": float(np.mean(crossings)) if crossings else None,
            "n_crossed": len(crossings),
            "fraction_pbp_smaller": float(np.mean(apbp[:, 1:] < abp[:, 1:])),
            "nse_final": float(np.mean(nse[:, -1])),
        })
    return rows


def plot(results: dict, axes) -> None:
    """Fig. 4a (NSE), 4b (FA ∠ BP) and 4c (FA ∠ PBP), one trace per ω (seed mean), blue → red."""
    import matplotlib.pyplot as plt

    ax_a, ax_b, ax_c = axes
    cmap = plt.get_cmap("coolwarm")
    n = len(results["runs"])
    for i, c in enumerate(results["runs"]):
        col = cmap(i / max(1, n - 1))
        ex = np.asarray(c["examples"])
        ax_a.semilogy(ex, np.maximum(np.nanmean(np.asarray(c["nse"], dtype=float), 0), 1e-12), color=col,
                      label=f"ω={c['omega']:g}")
        ax_b.plot(ex, np.nanmean(np.asarray(c["angle_bp_deg"], dtype=float), 0), color=col)
        ax_c.plot(ex, np.nanmean(np.asarray(c["angle_pbp_deg"], dtype=float), 0), color=col)
    ax_a.set(xlabel="training examples", ylabel="test NSE", title="Fig. 4a: FA, W ~ U(−ω, ω)")
    ax_a.legend(frameon=False, fontsize=6)
    ax_b.set(xlabel="training examples", ylabel="Δh_FA ∠ Δh_BP (deg)", ylim=(0, 100), title="Fig. 4b")
    ax_c.set(xlabel="training examples", ylabel="Δh_FA ∠ Δh_PBP (deg)", ylim=(0, 100), title="Fig. 4c")


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--epochs", type=int, default=None, help=f"passes over the 1000 examples (default {DEFAULTS['epochs']})")
    ap.add_argument("--lr", type=float, default=None, help=f"per-example learning rate (default {DEFAULTS['lr']:g})")
    args = EX.parse(ap, argv)
    params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
    for k in ("epochs", "lr"):
        if getattr(args, k) is not None:
            params[k] = getattr(args, k)
    t0 = time.perf_counter()
    results = simulate(params, progress=lambda s: print(s, flush=True))
    results["seconds"] = time.perf_counter() - t0
    out = args.out
    EX.save(out, results, plot, ncols=3, figsize=(13, 3.6), constrained_layout=True)
    print(f"{'omega':>8s} {'FA∠BP late':>10s} {'FA∠PBP late':>11s} {'PBP<BP from':>11s} {'NSE end':>9s}")
    for r in results["summary"]:
        cross = "never" if r["examples_pbp_below_bp"] is None else f"{r['examples_pbp_below_bp']:.0f}"
        print(f"{r['omega']:8g} {r['angle_bp_deg_late']:9.1f}° {r['angle_pbp_deg_late']:10.1f}° "
              f"{cross:>11s} {r['nse_final']:9.2e}")
    print(f"wrote {out / 'results.json'} and {out / (NAME + '.png')} ({results['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
