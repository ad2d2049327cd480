"""Amit (2021), Fig. 12 — linear gradient-flow ODEs of FRFB / URFB / BP (§5, eq. 7–9, §5.1).

What is integrated
------------------
A linear network ``y = W_k ⋯ W_1 x`` with squared loss and white inputs (``X Xᵗ = I``, here
``X = I_40``) learns the teacher map ``T = Y Xᵗ``.  With ``E = T − W_k ⋯ W_1`` the continuous-time
dynamics of the paper (eq. 7 for k = 2, eq. 9 for k layers, written without assuming W(0) = 0)
are::

    dW_i/dt = M_{i+1} ⋯ M_k · E · (W_{i−1} ⋯ W_1)ᵗ          i = 1 … k         (eq. 9)
    dR_i/dt = ε (dW_i/dt)ᵗ                                   (URFB, ε ∈ [0, 1]; eq. 7 third line)

with the feedback operator ``M_j = R_j`` for FRFB (ε = 0) and URFB (ε > 0) and ``M_j = W_jᵗ`` for
backprop (then there is no R).  With ``W_i(0) = 0`` this is exactly eq. 9, since then
``R_i(t) = R_i(0) + ε W_i(t)ᵗ``.  The flow is the gradient flow of ``½ tr(EᵗE)``; the paper's
error is ``e = tr(EᵗE)`` (plotted here relative to ``e`` at W = 0, i.e. ``‖T‖²``).

``R_1`` (input layer) is carried along with the same ε-scaled update although nothing reads it —
the paper's Fig. 12 shows a W–R correlation for all three layers, so its networks updated it too.

§5.1 setting: sizes 40-100-100-10, teacher ``T = W₃* W₂* W₁*`` with i.i.d. N(0, 2²) entries (the
paper writes the transposed shapes), FRFB/URFB start from ``W_i(0) = 0`` and random ``R_i(0)``,
BP from random ``W_i(0)``; ε ∈ {0, .25, .5, 1}; three runs; 1000 iterations.

Integration and units (our choices, the paper gives neither)
------------------------------------------------------------
* **Explicit Euler**, ``x ← x + dt·f(x)``, ``dt = 0.01``, 1000 steps (the paper's "1000
  iterations"); halving dt moves the times-to-threshold by < 0.2 % (see docs/results_amit.md).
* **Scale**: T is divided by its largest singular value ``s₁`` and the random initial R (and BP's
  initial W) have i.i.d. N(0, (σ_init / s₁^{1/3})²) entries with σ_init = 2 (the teacher's sd).
  For k = 3 layers the flow is invariant under ``T → cT, W, R → c^{1/3}(W, R), t → c^{−4/3} t``, so
  this *is* the raw-unit system (teacher and initial R / W all N(0, 2²)) on the time axis
  ``t_raw = t / s₁^{4/3}``; errors (relative) and correlations are unchanged.  The paper does not give
  the scale of R(0) or of BP's W(0): ``--init-sd`` changes it (smaller R(0) lengthens the initial
  plateau and widens the gaps between the ε curves).
* Correlation of ``W_l`` and ``R_lᵗ`` = Pearson correlation of their entries (nan while W_l = 0).

Run ``python examples/Amit_2021/fig12.py`` (full: 3 runs, ~5 s) or ``--quick`` (1 run).
(From the repository root with the package installed — ``pip install -e .`` — or ``PYTHONPATH=.``.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bridge.app.examples import Example

#: ε values of the paper (0 = FRFB, 1 = URFB) and the label of the backprop run
EPSILONS = (0.0, 0.25, 0.5, 1.0)
BP_LABEL = "bp"

DEFAULTS = {
    "sizes": (40, 100, 100, 10),
    "teacher_sd": 2.0,   # §5.1: W_i* entries N(0, sd=2)
    "init_sd": 2.0,      # R(0) (and BP's W(0)) entries in raw units; not given in the paper
    "epsilons": EPSILONS,
    "dt": 0.01,          # Euler step in normalised time (T / s₁)
    "steps": 1000,       # the paper's 1000 iterations
    "seeds": (0, 1, 2),  # three runs
    "threshold": 1e-3,   # relative error e/‖T‖² used for the convergence-time check
    "record_every": 1,
}

QUICK = {"seeds": (0,), "steps": 800}


# --------------------------------------------------------------------------------------------
# the right-hand side (pure numpy)
# --------------------------------------------------------------------------------------------
def linear_feedback_rhs(Ws, Rs, T, epsilon: float, *, backprop: bool = False):
    """Right-hand side of Amit eq. 7–9 for a linear k-layer net with white inputs.

    Parameters
    ----------
    Ws : list of k arrays, ``W_i`` of shape (n_i, n_{i−1}).
    Rs : list of k arrays or None, ``R_i`` of shape (n_{i−1}, n_i); ignored when ``backprop``.
    T : (n_k, n_0) teacher map ``Y Xᵗ``.
    epsilon : fraction of W's increment given to R (0 = FRFB, 1 = URFB).
    backprop : use ``W_jᵗ`` as the feedback (plain gradient flow); R gets no update.

    Returns
    -------
    dWs, dRs, E : the time derivatives (``dRs[i]`` None where R_i is None or for backprop) and
        the error matrix ``E = T − W_k ⋯ W_1``.
    """
    k = len(Ws)
    # forward products P_i = W_i ⋯ W_1 (P_0 = I), applied without forming the identity
    P = [None]
    for i, W in enumerate(Ws):
        P.append(W if i == 0 else W @ P[-1])
    E = T - P[-1]
    dWs = [None] * k
    B = E  # B_i = M_{i+1} ⋯ M_k E, the error carried down to layer i's output
    for i in range(k - 1, -1, -1):
        dWs[i] = B if i == 0 else B @ P[i].T
        if i > 0:
            M = Ws[i].T if backprop else Rs[i]
            B = M @ B
    if backprop:
        dRs = [None] * k
    else:
        dRs = [None if R is None else epsilon * dW.T for R, dW in zip(Rs, dWs)]
    return dWs, dRs, E


EX = Example(__file__, seeds="list")

def euler(Ws, Rs, T, epsilon, *, backprop, dt, steps, record_every=1):
    """Integrate :func:`linear_feedback_rhs` with explicit Euler; returns the recorded curves.

    ``error[j]`` is ``tr(EᵗE)`` *before* step ``j·record_every`` (time ``j·record_every·dt``);
    ``corr[j, l]`` the Pearson correlation of ``W_l`` and ``R_lᵗ`` at the same times.
    """
    Ws = [np.array(W, dtype=np.float64) for W in Ws]
    Rs = [None if R is None else np.array(R, dtype=np.float64) for R in Rs]
    k = len(Ws)
    times, errs, cors = [], [], []
    for n in range(steps + 1):
        dWs, dRs, E = linear_feedback_rhs(Ws, Rs, T, epsilon, backprop=backprop)
        if n % record_every == 0:
            times.append(n * dt)
            errs.append(float(np.sum(E * E)))
            cors.append([_corr(W, R) for W, R in zip(Ws, Rs)] if not backprop else [np.nan] * k)
        if n == steps:
            break
        for i in range(k):
            Ws[i] += dt * dWs[i]
            if dRs[i] is not None:
                Rs[i] += dt * dRs[i]
    return {"t": np.array(times), "error": np.array(errs), "corr": np.array(cors), "W": Ws, "R": Rs}


def _corr(W, R):
    if R is None:
        return np.nan
    a, b = W.ravel(), R.T.ravel()
    a, b = a - a.mean(), b - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else np.nan


def make_problem(seed: int, sizes, teacher_sd: float, init_sd: float):
    """Teacher, its scale s₁ and the random initial R (and BP's W), all from ``seed``.

    Returns ``T/s₁``, ``s₁``, ``R0`` (list, R_i of shape (n_{i−1}, n_i)) and ``W0_bp``, with random
    entries N(0, (init_sd / s₁^{1/k})²) — see the module docstring on the scale symmetry.
    """
    rng = np.random.default_rng(seed)
    k = len(sizes) - 1
    T = np.eye(sizes[0])
    for i in range(k):
        T = rng.normal(0.0, teacher_sd, (sizes[i + 1], sizes[i])) @ T
    s1 = float(np.linalg.svd(T, compute_uv=False)[0])
    sd = init_sd / s1 ** (1.0 / k)
    R0 = [rng.normal(0.0, sd, (sizes[i], sizes[i + 1])) for i in range(k)]
    W0_bp = [rng.normal(0.0, sd, (sizes[i + 1], sizes[i])) for i in range(k)]
    return T / s1, s1, R0, W0_bp


def time_to(t, rel_err, threshold):
    """First recorded time at which ``rel_err ≤ threshold`` (linear interpolation in log error)."""
    below = np.nonzero(rel_err <= threshold)[0]
    if len(below) == 0:
        return float("nan")
    j = below[0]
    if j == 0:
        return float(t[0])
    l0, l1, lt = np.log(rel_err[j - 1]), np.log(rel_err[j]), np.log(threshold)
    return float(t[j - 1] + (t[j] - t[j - 1]) * (l0 - lt) / (l0 - l1))


# --------------------------------------------------------------------------------------------
# simulate / plot / main
# --------------------------------------------------------------------------------------------
def simulate(params: dict | None = None) -> dict:
    """Run every ε and BP for every seed; returns curves and summary numbers.

    ``results["runs"][r]`` holds ``seed``, ``s1`` and, per label ("0", "0.25", …, "bp"), the time
    axis, relative error ``e/‖T‖²`` and W–R correlations per layer; ``results["summary"]`` holds the
    times to ``threshold`` per run and label, whether they decrease strictly with ε in every run,
    and the final correlations.
    """
    p = {**DEFAULTS, **(params or {})}
    sizes, k = tuple(p["sizes"]), len(p["sizes"]) - 1
    runs = []
    for seed in p["seeds"]:
        T, s1, R0, W0_bp = make_problem(int(seed), sizes, p["teacher_sd"], p["init_sd"])
        e0 = float(np.sum(T * T))
        curves = {}
        zeros = [np.zeros((sizes[i + 1], sizes[i])) for i in range(k)]
        for eps in p["epsilons"]:
            c = euler(zeros, R0, T, float(eps), backprop=False, dt=p["dt"], steps=p["steps"],
                      record_every=p["record_every"])
            curves[_label(eps)] = {"t": c["t"], "rel_error": c["error"] / e0, "corr": c["corr"]}
        c = euler(W0_bp, [None] * k, T, 0.0, backprop=True, dt=p["dt"], steps=p["steps"],
                  record_every=p["record_every"])
        curves[BP_LABEL] = {"t": c["t"], "rel_error": c["error"] / e0, "corr": c["corr"]}
        runs.append({"seed": int(seed), "s1": s1, "curves": curves})
    return {"params": p, "runs": runs, "summary": summarize(runs, p)}


def _label(eps) -> str:
    return f"{float(eps):g}"


def summarize(runs, p) -> dict:
    thr = p["threshold"]
    eps_labels = [_label(e) for e in p["epsilons"]]
    out = {"threshold": thr, "time_to_threshold": [], "ordered": [], "final_corr": [],
           "final_rel_error": [], "seeds": [r["seed"] for r in runs]}
    for r in runs:
        tt = {lab: time_to(c["t"], c["rel_error"], thr) for lab, c in r["curves"].items()}
        times = [tt[l] for l in eps_labels]
        ordered = bool(all(np.isfinite(times)) and all(a > b for a, b in zip(times, times[1:])))
        out["time_to_threshold"].append(tt)
        out["ordered"].append(ordered)
        out["final_corr"].append({l: [float(x) for x in r["curves"][l]["corr"][-1]] for l in eps_labels})
        out["final_rel_error"].append({l: float(c["rel_error"][-1]) for l, c in r["curves"].items()})
    out["all_ordered"] = bool(all(out["ordered"]))
    return out


COLORS = {"0": "tab:green", "0.25": "tab:orange", "0.5": "tab:purple", "1": "tab:blue", BP_LABEL: "k"}


def plot(results: dict, axes) -> None:
    """Fig. 12 layout on ``axes`` of shape (1 + k, n_runs): log-error, then W–R correlation per layer.

    Row 0: log10 relative error per run; rows 1…k: correlation of ``W_l`` and ``R_lᵗ`` for the top
    layer first (l = k) down to the input layer (l = 1), one colour per ε.
    """
    axes = np.asarray(axes, dtype=object).reshape(-1, len(results["runs"]))
    k = len(results["params"]["sizes"]) - 1
    for j, run in enumerate(results["runs"]):
        ax = axes[0, j]
        for lab, c in run["curves"].items():
            name = "BP" if lab == BP_LABEL else f"ε={lab}" + (" (FRFB)" if lab == "0" else " (URFB)" if lab == "1" else "")
            ax.plot(c["t"], np.log10(np.maximum(c["rel_error"], 1e-300)), color=COLORS.get(lab), lw=1.2, label=name)
        ax.set(title=f"run {j + 1} (seed {run['seed']})", xlabel="t", ylabel="log10 e / ‖T‖²" if j == 0 else None)
        ax.axhline(np.log10(results["params"]["threshold"]), color="0.7", lw=0.7, ls=":")
        if j == 0:
            ax.legend(fontsize=7)
        for row, layer in enumerate(range(k, 0, -1), start=1):
            if row >= axes.shape[0]:
                break
            ax = axes[row, j]
            for lab, c in run["curves"].items():
                if lab == BP_LABEL:
                    continue
                ax.plot(c["t"], c["corr"][:, layer - 1], color=COLORS.get(lab), lw=1.2)
            ax.set(ylim=(-0.1, 1.05), xlabel="t" if row == axes.shape[0] - 1 else None,
                   ylabel=f"corr(W{layer}, R{layer}ᵗ)" if j == 0 else None)


def write_outputs(results: dict, out: Path) -> dict:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    k = len(results["params"]["sizes"]) - 1
    n = len(results["runs"])
    fig, axes = plt.subplots(1 + k, n, figsize=(3.6 * n + 0.6, 2.4 * (1 + k)), squeeze=False, sharex=True)
    plot(results, axes)
    fig.suptitle("Amit 2021 Fig. 12\nlinear ODEs (eq. 9), 40-100-100-10\nEuler dt=%g" % results["params"]["dt"],
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "fig12.png", dpi=110)
    plt.close(fig)
    p = {k_: (list(v) if isinstance(v, tuple) else v) for k_, v in results["params"].items()}
    summary = {"params": p, **results["summary"], "s1": [r["s1"] for r in results["runs"]]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    np.savez_compressed(out / "curves.npz", **{
        f"seed{r['seed']}_{lab}_{key}": c[key]
        for r in results["runs"] for lab, c in r["curves"].items() for key in ("t", "rel_error", "corr")})
    return summary


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--dt", type=float, help=f"Euler step (default {DEFAULTS['dt']})")
    ap.add_argument("--steps", type=int, help=f"Euler steps (default {DEFAULTS['steps']})")
    ap.add_argument("--init-sd", type=float, help="sd of R(0) and BP's W(0) in raw units (default 2)")
    ap.add_argument("--threshold", type=float, help="relative error for the convergence-time check (default 1e-3)")
    args = EX.parse(ap, argv)
    params = {**(QUICK if args.quick else {}), **EX.seed_params(args)}
    for name in ("dt", "steps", "init_sd", "threshold"):
        v = getattr(args, name)
        if v is not None:
            params[name] = v
    t0 = time.perf_counter()
    results = simulate(params)
    s = write_outputs(results, args.out)
    labs = [_label(e) for e in results["params"]["epsilons"]] + [BP_LABEL]
    print(f"time to e/‖T‖² ≤ {s['threshold']:g} (normalised time units):")
    print("seed  " + "  ".join(f"{('ε=' + l) if l != BP_LABEL else 'BP':>8}" for l in labs) + "  decreasing in ε")
    for seed, tt, ok in zip(s["seeds"], s["time_to_threshold"], s["ordered"]):
        print(f"{seed:<5} " + "  ".join(f"{tt[l]:8.3f}" for l in labs) + f"  {ok}")
    print("final corr(W_l, R_lᵗ), layers 1..k, mean over runs:")
    for l in labs[:-1]:
        m = np.nanmean([fc[l] for fc in s["final_corr"]], axis=0)
        print(f"  ε={l:<5} " + "  ".join(f"{x:.3f}" for x in m))
    if not s["all_ordered"]:
        print("NOTE: convergence time did NOT decrease strictly with ε in every run")
    print(f"wrote {args.out}/fig12.png, summary.json, curves.npz ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
