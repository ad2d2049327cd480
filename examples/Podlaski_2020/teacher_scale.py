"""Podlaski & Machens (2020), Fig. 3g–k's teacher scale: when does DI (eq. 14) equal NDI?

The nonlinear regression task of §7.5.3 (30-20-10-10, tanh hidden layers, linear output) with its
teacher's weights and biases ~ U(±s), for teacher scales s from the paper's 0.01 up to order 1
(``scales``; targets grow ∝ s).  For each s the student trains with DI (eq. 14, sequential chain,
fixed point by the solver, Tr-Init, α = 1e-3, ‖δ‖ ≤ 1 as in §7.5.1) and at every evaluation we
measure, on a probe batch:

* the angle between DI's hidden teaching signals and NDI's (eq. 10's operator with Algorithm 4's
  g'(a) gate, the same cap),
* the angle between DI's and eq. 10's operator *without* the gate (DI's fixed point with linear g):
  for small δ eq. 15 linearises to W g'(0) δ_{l−1} = δ_l + αu, so this is what DI tends to,
* the angle between gated DI (``DI(around="gated")``: linear controller, then g'(a)) and NDI, a
  control: per example the two are parallel at every scale (``…_worst_example_deg``); flattened
  over the batch they differ where the cap acts, since gated DI caps after the gate and NDI before,
* the mean g'(a_l) of each hidden layer.

DI − NDI thus splits into the gate (NDI multiplies by g'(a_{l−1}), eq. 14 has no forward activity
in it) and the nonlinear inversion (eq. 16's g⁻¹ of large errors).  Both vanish — DI ≈ NDI — when
the hidden units work near a = 0 (mean g'(a) → 1) and the errors are small, which is what the
paper's U(±0.01) teacher gives; order-1 targets give neither.

    python examples/Podlaski_2020/teacher_scale.py [--quick] [--scales S ...] [--epochs N] [--lr LR] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch

import bridge.inversion as bi
from bridge.app.examples import Example, load_example
from bridge.app.runs import TrainConfig, build_model
from bridge.losses import TeachingLoss
from bridge.metrics import angle_deg
from bridge.train import train
from plasticity import NDI, forward, output_signal, teaching_signals
from plasticity.inversion import StabilityError

EX = Example(__file__, seeds="single")
FIG3 = load_example(Path(__file__).with_name("fig3.py"))


def default_params(quick: bool = False) -> dict:
    return {"quick": quick, "seed": 0, "scales": [float(s) for s in np.geomspace(0.01, 1.0, 6)],
            "n_train": 100 if quick else 1000, "n_test": 128 if quick else 500, "epochs": 1 if quick else 5,
            "evals_per_epoch": 2 if quick else 5, "lr": 1e-3, "alpha": 1e-3, "max_norm": 1.0, "probe_size": 128}


def check_params(p: dict) -> None:
    """One-line ValueErrors naming the parameter and what it may be."""
    s = p["scales"]
    if not s or not all(isinstance(v, (int, float)) and np.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"scales must be a non-empty list of finite numbers > 0, got {s!r}")
    for name in ("lr", "max_norm"):
        if not (isinstance(p[name], (int, float)) and np.isfinite(p[name]) and p[name] > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {p[name]!r}")
    for name in ("epochs", "n_train", "n_test", "evals_per_epoch", "probe_size"):
        if int(p[name]) != p[name] or p[name] < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {p[name]!r}")


@torch.no_grad()
def measure(model, x, y) -> dict:
    """The angles (degrees, per hidden layer, flattened over the batch) of the module docstring and
    the mean g'(a_l) of each hidden layer, in float64."""
    rule = model.rule
    Ws = [w.detach().double() for w in model.weights()]
    bs = [None if b is None else b.detach().double() for b in model.biases()]
    Rs = [None if r is None else r.detach().double() for r in model.feedbacks()]
    fwd = forward(Ws, bs, x.double(), model.transfers)
    dL = output_signal(TeachingLoss("mse").loss, fwd, y.double(), model.transfers[-1])
    ndi = teaching_signals(NDI(alpha=rule.alpha, max_norm=rule.max_norm), Ws, Rs, fwd, dL, model.transfers)
    di = rule.reference_signals(Ws, Rs, fwd, dL, model.transfers)
    ungated = dataclasses.replace(rule, transfer="linear", around="zero").reference_signals(Ws, Rs, fwd, dL,
                                                                                           model.transfers)
    gated = dataclasses.replace(rule, around="gated").reference_signals(Ws, Rs, fwd, dL, model.transfers)

    def angles(a, b):
        return [angle_deg(u, v) for u, v in zip(a[:-1], b[:-1])]

    def worst_example(a, b):  # the largest angle between one example's two signals (zero rows left out)
        out = []
        for u, v in zip(a[:-1], b[:-1]):
            nu, nv = u.norm(dim=1), v.norm(dim=1)
            keep = (nu > 0) & (nv > 0)
            cos = ((u * v).sum(1)[keep] / (nu * nv)[keep]).clamp(-1.0, 1.0)
            out.append(float(torch.rad2deg(torch.arccos(cos)).max()) if bool(keep.any()) else 0.0)
        return out

    return {"angle_ndi_deg": angles(di, ndi), "angle_ungated_deg": angles(di, ungated),
            "angle_gated_ndi_deg": angles(gated, ndi), "angle_gated_ndi_worst_example_deg": worst_example(gated, ndi),
            "gate_mean": FIG3.mean_gates(model, x), "error_rms": float(dL.pow(2).mean().sqrt())}


def run_scale(scale: float, p: dict) -> dict:
    data = FIG3.paper_teacher(p["n_train"], p["n_test"], seed=p["seed"], scale=scale)
    rp = dict(method="steady", max_norm=p["max_norm"], init="tr")
    cfg = TrainConfig(task="lillicrap-nonlinear", rule="di", lr=p["lr"], batch_size=1, epochs=p["epochs"],
                      seed=p["seed"], weight_scale=0.01, feedback_scale=0.01, alpha=p["alpha"], rule_params=rp,
                      n_train=p["n_train"], n_test=p["n_test"], evals_per_epoch=p["evals_per_epoch"],
                      dtype="float64", quiet=True, probe_size=p["probe_size"]).resolved()
    model = build_model(cfg, data.n_in, data.n_out)
    FIG3._same_start(model, cfg, data)
    bi.prepare(model)
    px = torch.as_tensor(data.x_test[: p["probe_size"]], dtype=torch.float64)
    py = torch.as_tensor(data.y_test[: p["probe_size"]], dtype=torch.float64)
    rows = [{"epoch": 0.0, "test_nse": None, **measure(model, px, py)}]

    def log(row):
        if row["epoch"] > 0:
            rows.append({"epoch": row["epoch"], "test_nse": row["test_nse"], **measure(model, px, py)})

    diverged = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            train(model, data, TeachingLoss("mse"), cfg, log=log)
        except (FloatingPointError, StabilityError) as e:
            diverged = f"{type(e).__name__}: {e}"
    return {"scale": scale, "target_rms": float(np.sqrt(np.mean(data.y_train.astype(np.float64) ** 2))),
            "diverged": diverged, "stabilisations": len(model.di_state.events), "rows": rows}


def simulate(params: dict | None = None) -> dict:
    p = {**default_params(), **(params or {})}
    check_params(p)
    return {"params": p, "runs": [run_scale(float(s), p) for s in p["scales"]]}


def summary(results: dict) -> list[dict]:
    out = []
    for r in results["runs"]:
        last = r["rows"][-1]
        out.append({"scale": float(f"{r['scale']:.4g}"), "target_rms": float(f"{r['target_rms']:.3g}"),
                    "test_nse": None if last["test_nse"] is None else round(last["test_nse"], 4),
                    "gate_mean": [round(v, 4) for v in last["gate_mean"]],
                    **{k: [round(v, 2) for v in last[k]] for k in ("angle_ndi_deg", "angle_ungated_deg",
                                                                    "angle_gated_ndi_deg")},
                    "angle_gated_ndi_worst_example_deg": [float(f"{v:.2g}") for v in
                                                          last["angle_gated_ndi_worst_example_deg"]],
                    "diverged": r["diverged"], "stabilisations": r["stabilisations"]})
    return out


def plot(results: dict, axes) -> None:
    """axes: two — (a) DI–NDI angle of δ_l against the mean g'(a_l) of hidden layer l at every
    evaluation (filled: to NDI; open: to the ungated operator), coloured by teacher scale; (b) the
    final angles of δ_1 against the teacher scale, with the mean g'(a_1) on a second axis."""
    import matplotlib.pyplot as plt

    ax, ax2 = axes
    runs = results["runs"]
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
    for c, r in zip(colours, runs):
        for l, marker in ((0, "o"), (1, "^")):
            g = [row["gate_mean"][l] for row in r["rows"]]
            ax.scatter(g, [row["angle_ndi_deg"][l] for row in r["rows"]], color=c, marker=marker, s=18,
                       label=f"s = {r['scale']:.3g}" if l == 0 else None)
            ax.scatter(g, [row["angle_ungated_deg"][l] for row in r["rows"]], facecolors="none", edgecolors=c,
                       marker=marker, s=18)
    ax.set_xlabel("mean g'(a_l) of hidden layer l (○ l = 1, △ l = 2)")
    ax.set_ylabel("angle (deg)")
    ax.set_title("DI (eq. 14) vs NDI (filled) and vs ungated eq. 10 (open)", fontsize=9)
    ax.legend(fontsize=7, title="teacher U(±s)", title_fontsize=7)
    s = [r["scale"] for r in runs]
    for key, style, label in (("angle_ndi_deg", "o-", "DI ∠ NDI"), ("angle_ungated_deg", "s--", "DI ∠ ungated eq. 10"),
                              ("angle_gated_ndi_deg", "^:", "gated DI ∠ NDI")):
        ax2.semilogx(s, [r["rows"][-1][key][0] for r in runs], style, label=label)
    ax2.set_xlabel("teacher scale s (weights and biases ~ U(±s); paper: 0.01)")
    ax2.set_ylabel("angle of δ_1 at the end (deg)")
    ax2.set_title("final angles of δ_1", fontsize=9)
    ax2.legend(fontsize=7, loc="upper left")
    twin = ax2.twinx()
    twin.semilogx(s, [r["rows"][-1]["gate_mean"][0] for r in runs], "k.-", lw=0.8)
    twin.set_ylabel("mean g'(a_1) (black)")


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--scales", type=float, nargs="+", metavar="S", help="teacher scales (default: 6 from 0.01 to 1)")
    ap.add_argument("--epochs", type=int, help="override the epochs")
    ap.add_argument("--lr", type=float, help="learning rate (default 1e-3, §7.5.3)")
    ap.add_argument("--n-train", type=int, help="training examples per scale")
    args = EX.parse(ap, argv)
    import json

    p = {**default_params(args.quick), **EX.seed_params(args)}
    for key in ("scales", "epochs", "lr", "n_train"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    try:
        check_params(p)
    except ValueError as e:
        ap.error(str(e))
    res = simulate(p)
    out = args.out
    EX.save(out, res, plot, ncols=2, figsize=(11, 4.2), dpi=110, layout="tight")
    s = summary(res)
    EX.save(out, s, name="summary.json")
    print(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
