"""Lillicrap et al. (2016), Fig. 1d–e: a 30–20–10 linear network learns y* = T x (task 1).

Four learning schemes on the same data, initial weights and order of examples (per seed):

* **BP**  — the hidden update is ``Δh_BP = Wᵀ e``;
* **FA**  — ``Δh_FA = B e`` with a fixed random ``B`` (entries U(−0.5, 0.5), Methods);
* **shallow** — only the output weights W learn.  Emulated exactly as FA with ``B = 0``
  (``feedback_scale=0``): the hidden layer then receives a zero teaching signal, so
  ``ΔW_0 = 0`` and W_0 keeps its initial values;
* **np** — node-perturbation reinforcement learning (dark grey in Fig. 1d; Methods, task 1 (c),
  refs. 23–24): W learns by the same delta rule ``ΔW = η e hᵀ``; the hidden weights learn from a
  scalar reinforcement signal only.  Each example runs a second, noisy pass
  ``h̃ = W_0 x + σ ξ`` (ξ ~ N(0, I)) and sets ``Δh_NP = −(L̃ − L) ξ / σ`` (an estimate of
  ``Δh_BP = Wᵀ e`` whose noise grows with the number of hidden units), ``ΔW_0 = η_NP Δh_NP xᵀ``.
  The estimator is :func:`plasticity.learned_feedback.np_target` (the noisy pass
  :func:`~plasticity.learned_feedback.noisy_forward`); the paper chose σ and η "by manual search",
  and so did we (``np_sigma``, ``np_lr``; see docs/results.md).  This is *not* the engine's rule
  ``np``, which uses the same estimator to learn a feedback matrix (Lansdell et al. 2019).

Panel d is the test normalised squared error ``NSE = Σ‖y*−y‖² / Σ‖y*‖²`` against the number of
training examples seen (online learning, one example per step, η = 0.005, W ~ U(±0.01) as in the
Methods); panel e is FA's angle ``Δh_FA ∠ Δh_BP``, computed on a fixed probe of 256 test
examples (the teaching signals of the whole probe flattened into one vector), mean ± 2 sd
over seeds.  Sign convention: the engine's δ = −∂L/∂a equals the paper's ``e``-based updates
(``e = y* − y``), so the angles are the paper's.

Run ``python examples/Lillicrap_2016/fig1.py [--quick] [--seeds N] [--out DIR]``.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from bridge.app.examples import Example
from bridge.app.plots import mean_sd, mean_sd_curves

NAME = "fig1"
EX = Example(__file__, seeds="count")

#: condition → overrides of the task-1 defaults (bridge/tasks.py "lillicrap-linear")
CONDITIONS = {
    "shallow": {"rule": "fa", "feedback_scale": 0.0},
    "bp": {"rule": "bp"},
    "fa": {"rule": "fa", "feedback_scale": 0.5},
}

DEFAULTS = {
    "seed": 0,              # the first seed
    "seeds": 5,
    "epochs": 2,            # 2000 examples: BP and FA reach NSE < 1e-6; later the error is float32 noise
    "n_train": 1000,
    "n_test": 500,
    "lr": 0.005,            # per example (batch size 1); same η for every scheme
    "weight_scale": 0.01,   # W_0, W ~ U(−0.01, 0.01)  (Methods, task 1)
    "evals_per_epoch": 20,  # one evaluation every 50 examples
    "np_lr": 0.001,         # η_NP of the hidden weights (W: lr); manual search, docs/results.md
    "np_sigma": 0.01,       # σ of the hidden-unit perturbation
    "conditions": [*CONDITIONS, "np"],
}

#: every condition this script can run
ALL_CONDITIONS = (*CONDITIONS, "np")

QUICK = {"seeds": 1, "epochs": 1, "n_train": 300, "n_test": 200, "evals_per_epoch": 6}


def simulate(params: dict | None = None, *, progress=None) -> dict:
    """Train every condition for every seed; return curves (one row per seed) and a summary."""
    import torch

    from bridge.app.runs import TrainConfig, run_experiment

    torch.set_num_threads(1)
    p = {**DEFAULTS, **(params or {})}
    bad = [c for c in p["conditions"] if c not in ALL_CONDITIONS]
    if bad:
        raise ValueError(f"conditions must be among {', '.join(ALL_CONDITIONS)}, got {', '.join(map(str, bad))}")
    for k in ("np_lr", "np_sigma"):
        if not (isinstance(p[k], (int, float)) and p[k] > 0 and math.isfinite(p[k])):
            raise ValueError(f"{k} must be a finite number > 0, got {p[k]!r}")
    out = {"params": p, "conditions": {}}
    for cond in p["conditions"]:
        curves = {"examples": None, "nse": [], "angle_bp_deg": [], "angle_pbp_deg": []}
        for seed in range(int(p["seed"]), int(p["seed"]) + int(p["seeds"])):
            t0 = time.perf_counter()
            if cond == "np":
                ex, nse, ang = node_perturbation_run(p, seed)
                curves["examples"] = ex
                curves["nse"].append(nse)
                curves["angle_bp_deg"].append(ang)
                curves["angle_pbp_deg"].append([None] * len(ex))
                if progress is not None:
                    progress(f"{NAME}: np seed {seed}: NSE {nse[0]:.3f} -> {nse[-1]:.2e} "
                             f"({time.perf_counter() - t0:.1f} s)")
                continue
            cfg = TrainConfig(
                task="lillicrap-linear", seed=seed, epochs=p["epochs"], lr=p["lr"], batch_size=1,
                weight_scale=p["weight_scale"], n_train=p["n_train"], n_test=p["n_test"],
                evals_per_epoch=p["evals_per_epoch"], quiet=True, **CONDITIONS[cond],
            )
            with warnings.catch_warnings():  # B = 0 gives all-nan angles (shallow): expected
                warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
                run = run_experiment(cfg, write=False)
            h = run["history"]
            curves["examples"] = [r["epoch"] * p["n_train"] for r in h]
            curves["nse"].append([r["test_nse"] for r in h])
            curves["angle_bp_deg"].append([r["angle_bp_deg"][0] for r in h])
            curves["angle_pbp_deg"].append([r["angle_pbp_deg"][0] for r in h])
            if progress is not None:
                progress(f"{NAME}: {cond} seed {seed}: NSE {h[0]['test_nse']:.3f} -> {h[-1]['test_nse']:.2e} "
                         f"({time.perf_counter() - t0:.1f} s)")
        out["conditions"][cond] = curves
    out["summary"] = summarize(out)
    return out


def node_perturbation_run(p: dict, seed: int):
    """Task 1 trained with node perturbation (Methods, task 1 (c)); online, one example per step.

    Same data, same initial W_0 and W and the same order of examples as the engine's runs of this
    seed.  Per example: ``e = y* − W W_0 x``; ``ΔW = η e hᵀ``; ``Δh_NP = −(L̃ − L) ξ / σ`` from one
    noisy pass; ``ΔW_0 = η_NP Δh_NP xᵀ``.  Returns (examples seen, test NSE, angle Δh_NP ∠ Δh_BP in
    degrees on the 256-example probe with one fresh perturbation per probe example) at the same
    evaluation points as the other schemes.
    """
    from bridge.app.runs import TrainConfig, build_model
    from bridge.data import load_dataset
    from plasticity import get_loss
    from plasticity.learned_feedback import noisy_forward, np_target

    cfg = TrainConfig(task="lillicrap-linear", seed=seed, rule="bp", weight_scale=p["weight_scale"]).resolved()
    data = load_dataset("lillicrap-linear", seed=seed, n_train=p["n_train"], n_test=p["n_test"])
    W0, W = (w.detach().double().numpy().copy() for w in build_model(cfg, 30, 10).weights())
    x_tr, y_tr = data.x_train.astype(np.float64), data.y_train.astype(np.float64)
    x_te, y_te = data.x_test.astype(np.float64), data.y_test.astype(np.float64)
    loss, lin = get_loss("mse"), ["linear", "linear"]
    lr, lr_np, sigma = float(p["lr"]), float(p["np_lr"]), float(p["np_sigma"])
    order_rng = np.random.default_rng(seed)     # the engine's batch order (bridge.train.train)
    noise = np.random.default_rng([seed, 1])    # the perturbations ξ
    probe = slice(0, 256)

    def evaluate():
        y = x_te @ W0.T @ W.T
        xp, tp = x_te[probe], y_te[probe]
        xi = noise.standard_normal((len(xp), W0.shape[0]))
        l_clean = loss.value(xp @ W0.T @ W.T, tp)
        l_noisy = loss.value(noisy_forward([W0, W], None, xp, lin, [xi], sigma), tp)
        dh_np = np_target(l_noisy, l_clean, xi, sigma).ravel()
        dh_bp = ((tp - xp @ W0.T @ W.T) @ W).ravel()
        nrm = np.linalg.norm(dh_np) * np.linalg.norm(dh_bp)
        ang = math.degrees(math.acos(np.clip(dh_np @ dh_bp / nrm, -1, 1))) if nrm > 0 else None
        return float(((y_te - y) ** 2).sum() / (y_te**2).sum()), ang

    n = len(x_tr)
    eval_at = {int(round(k * n / p["evals_per_epoch"])) for k in range(1, p["evals_per_epoch"] + 1)}
    examples, nse, angles = [0.0], *([v] for v in evaluate())
    for epoch in range(int(p["epochs"])):
        for k, i in enumerate(order_rng.permutation(n)):
            x, t = x_tr[i : i + 1], y_tr[i : i + 1]
            h = x @ W0.T
            y = h @ W.T
            xi = noise.standard_normal(h.shape)
            l_clean = loss.value(y, t)
            l_noisy = loss.value(noisy_forward([W0, W], None, x, lin, [xi], sigma), t)
            dh = np_target(l_noisy, l_clean, xi, sigma)  # ≈ Δh_BP = Wᵀ e (Lillicrap's sign)
            W += lr * (t - y).T @ h
            W0 += lr_np * dh.T @ x
            if (k + 1) in eval_at:
                v, a = evaluate()
                examples.append(epoch * n + k + 1.0)
                nse.append(v)
                angles.append(a)
    return examples, nse, angles


def _stats(values) -> dict:

    s = mean_sd(values)
    return s if s["n"] else {"mean": None, "sd": None, "n": 0}


def summarize(results: dict) -> dict:
    """Per condition: final NSE, examples to reach NSE < 0.05; for FA, its angle to BP early and late."""
    summ = {}
    for cond, c in results["conditions"].items():
        ex = np.asarray(c["examples"])
        nse = np.asarray(c["nse"], dtype=float)
        reach = []
        for row in nse:
            hit = np.nonzero(row < 0.05)[0]
            reach.append(float(ex[hit[0]]) if hit.size else math.nan)
        s = {"nse_initial": _stats(nse[:, 0]), "nse_final": _stats(nse[:, -1]),
             "examples_to_nse_0.05": _stats(reach)}
        ang = np.asarray(c["angle_bp_deg"], dtype=float)
        if cond in ("bp", "fa") and np.isfinite(ang).any():
            s["angle_bp_deg_initial"] = _stats(ang[:, 0])
            s["angle_bp_deg_final"] = _stats(ang[:, -1])
            s["angle_bp_deg_min"] = _stats(np.nanmin(ang[:, 1:], axis=1) if ang.shape[1] > 1 else ang[:, 0])
        summ[cond] = s
    return summ


COLORS = {"shallow": "0.7", "np": "0.35", "bp": "k", "fa": "tab:green"}


def plot(results: dict, axes) -> None:
    """Fig. 1d (NSE, mean ± sd over seeds) on ``axes[0]``; Fig. 1e (FA angle to BP) on ``axes[1]``."""
    ax_d, ax_e = axes
    for cond, c in results["conditions"].items():
        ex = np.asarray(c["examples"])
        nse = np.asarray(c["nse"], dtype=float)
        m, s = mean_sd_curves(nse)
        ax_d.plot(ex, m, color=COLORS.get(cond), label=cond)
        ax_d.fill_between(ex, m - s, m + s, color=COLORS.get(cond), alpha=0.2, lw=0)
    ax_d.set(xlabel="training examples", ylabel="test NSE", ylim=(0, 1.05), title="Fig. 1d: task 1 (30-20-10 linear)")
    ax_d.legend(frameon=False)
    if "fa" in results["conditions"]:
        c = results["conditions"]["fa"]
        ex = np.asarray(c["examples"])
        ang = np.asarray(c["angle_bp_deg"], dtype=float)
        m, s = mean_sd_curves(ang)
        ax_e.plot(ex, m, color=COLORS["fa"])
        ax_e.fill_between(ex, m - 2 * s, m + 2 * s, color=COLORS["fa"], alpha=0.2, lw=0)
        ax_e.axhline(90, color="0.6", ls=":", lw=1)
    ax_e.set(xlabel="training examples", ylabel="Δh_FA ∠ Δh_BP (deg)", ylim=(0, 100), title="Fig. 1e")


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--epochs", type=int, default=None, help=f"passes over the 1000 examples (default {DEFAULTS['epochs']})")
    args = EX.parse(ap, argv)
    params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    t0 = time.perf_counter()
    results = simulate(params, progress=lambda s: print(s, flush=True))
    out = args.out
    results["seconds"] = time.perf_counter() - t0
    EX.save(out, results, plot, ncols=2, figsize=(9, 3.6), constrained_layout=True)
    for cond, s in results["summary"].items():
        line = f"{cond:8s} final NSE {s['nse_final']['mean']:.3g} ± {s['nse_final']['sd']:.2g}"
        if "angle_bp_deg_final" in s:
            line += (f"; FA∠BP {s['angle_bp_deg_initial']['mean']:.0f}° -> {s['angle_bp_deg_final']['mean']:.0f}° "
                     f"(min {s['angle_bp_deg_min']['mean']:.0f}°)")
        print(line)
    print(f"wrote {out / 'results.json'} and {out / (NAME + '.png')} ({results['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
