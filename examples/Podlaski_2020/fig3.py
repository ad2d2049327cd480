"""Podlaski & Machens (2020), Fig. 3: linear (30-20-10) and nonlinear (30-20-10-10, tanh) regression
trained with BP, FA, PBP, NDI and DI.

Conditions (``CONDITIONS``): BP, FA, PBP; NDI and DI with Tr-Init at α = 1e-3, with Tr-Init at
α = 0 and with R-Init (SSA-stabilised) — the paper's "three realizations … with different weight
initialization and leak values" — and single-loop DI (SDI, Algorithm 3; nonlinear task only).

Panels: NMSE over training (a, g), stability of DI — largest real eigenvalue of S9 (c, h) —, the
angle between DI's and NDI's hidden error signals (d, i) and between DI's and PBP's (f), and the
angle between each feedback matrix B_l and −W_lᵀ (e, j).  Panel d also shows the angle to eq. 10's
operator without NDI's g'(a) gate, which is what DI's eq. 14 (g applied to δ) tends to for small
errors: it separates the gate from the nonlinear inversion in the DI–NDI angle.  Not drawn: panel b (fixed-norm updates).

Settings (§7.5.2–7.5.3): W ~ U(±0.01); FA feedback U(±0.5); NDI and DI Tr-Init ``B = −W(0)ᵀ``;
online learning; learning rate 1e-2 (linear) and 1e-3 (nonlinear); ‖δ‖ capped at 10 / 1 for DI, PBP
and NDI (§7.5.1; ``max_norm``).  NMSE = test NSE here
(normalised by the target's power, not by the largest error across algorithms as in the paper).

    python examples/Podlaski_2020/fig3.py [--quick] [--conditions NAME ...] [--out DIR]
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

import bridge.inversion as bi
from bridge.app.examples import Example
from bridge.app.runs import TrainConfig, build_model
from bridge.data import load_dataset
from bridge.losses import TeachingLoss
from bridge.metrics import angle_deg
from bridge.train import train
from plasticity import rule_parameters
from plasticity.inversion import StabilityError

#: Conditions: (rule, rule/feedback settings).  ``alpha=None`` takes ``params["alpha"]``; ``init``
#: "tr" is Tr-Init B = −W(0)ᵀ, "random" is R-Init (U(±0.01), SSA-stabilised for DI).  The paper's
#: Fig. 3 shows "three realizations of DI, NDI … with different weight initialization and leak
#: values" and SDI (single-loop DI, Alg. 3) for the nonlinear task only.
CONDITIONS = {
    "bp": ("bp", {}),
    "fa": ("fa", {}),
    "pbp": ("pbp", {}),
    "ndi": ("ndi", {"init": "tr", "alpha": None}),
    "di": ("di", {"init": "tr", "alpha": None}),
    "ndi-a0": ("ndi", {"init": "tr", "alpha": 0.0}),
    "di-a0": ("di", {"init": "tr", "alpha": 0.0}),
    "ndi-rinit": ("ndi", {"init": "random", "alpha": None}),
    "di-rinit": ("di", {"init": "random", "alpha": None}),
    "sdi": ("di", {"init": "tr", "alpha": None, "chain": "single-loop"}),
}
RULES = tuple(CONDITIONS)  # kept for callers of the older name
TASKS = {
    "linear": dict(task="lillicrap-linear", lr=1e-2, max_norm=10.0, skip=("sdi",)),  # one hidden layer: SDI ≡ DI
    "nonlinear": dict(task="lillicrap-nonlinear", lr=1e-3, max_norm=1.0, skip=()),
}


EX = Example(__file__, seeds="single")

def default_params(quick: bool = False) -> dict:
    """``di_method`` is how the main DI condition runs (Euler dynamics for the full figure);
    ``variant_method`` how the other DI conditions do ("steady": the same fixed point by Newton,
    cross-checked against Euler in ``credit crossval``; "euler" to simulate them all)."""
    return {
        "quick": quick, "seed": 0, "alpha": 1e-3,
        "n_train": 200 if quick else 1000, "n_test": 200 if quick else 1000,
        "epochs": 2 if quick else 10, "evals_per_epoch": 4 if quick else 5,
        "di_method": "steady" if quick else "euler", "variant_method": "steady",
        "di_dt": 0.5, "di_tol": 1e-6, "di_max_steps": 500 if quick else 4000,
        "conditions": list(CONDITIONS),
    }


def _run_one(kind: str, name: str, p: dict, data) -> dict:
    spec = TASKS[kind]
    rule, settings = CONDITIONS[name]
    alpha = p["alpha"] if settings.get("alpha") is None else settings["alpha"]
    rp = {}
    if rule == "di":
        method = p["di_method"] if name == "di" else p["variant_method"]
        rp = dict(method=method, dt=p["di_dt"], tol=p["di_tol"], max_steps=p["di_max_steps"],
                  max_norm=spec["max_norm"], init=settings["init"], chain=settings.get("chain", "sequential"))
    elif rule in ("pbp", "ndi"):
        rp = {"max_norm": spec["max_norm"]}
    cfg = TrainConfig(task=spec["task"], rule=rule, lr=spec["lr"], batch_size=1, epochs=p["epochs"],
                      seed=p["seed"], weight_scale=0.01, feedback_scale=0.5 if rule == "fa" else 0.01,
                      alpha=alpha if "alpha" in rule_parameters(rule) else None,
                      rule_params=rp, n_train=p["n_train"], n_test=p["n_test"],
                      evals_per_epoch=p["evals_per_epoch"], dtype="float64", quiet=True, probe_size=128).resolved()
    model = build_model(cfg, data.n_in, data.n_out)
    if rule == "ndi" and settings["init"] == "tr":  # Tr-Init for NDI as for DI
        with torch.no_grad():
            for lin in list(model.linears)[1:]:
                lin.feedback.copy_(-lin.weight.T)
    if rule == "di":
        bi.prepare(model)
    loss = TeachingLoss("mse")
    px, py = torch.tensor(data.x_test[:128]), torch.tensor(data.y_test[:128])
    extra, rows = [], []

    def log(row):
        rows.append(row)
        rec = {"epoch": row["epoch"]}
        if rule in ("di", "ndi"):  # Fig. 3e, j: angle between B_l and −W_lᵀ, layers 2…L
            rec["angle_b_wt_deg"] = [angle_deg(lin.feedback.detach(), -lin.weight.detach().T)
                                     for lin in list(model.linears)[1:]]
        if rule == "di":
            rec.update(bi.di_angles(model, px, py, loss))
        extra.append(rec)

    diverged = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            train(model, data, loss, cfg, log=log)
        except (FloatingPointError, StabilityError) as e:  # a run that blows up is reported, not hidden
            diverged = f"{type(e).__name__}: {e}"
    out = {"epoch": [r["epoch"] for r in rows], "nmse": [r["test_nse"] for r in rows], "diverged": diverged,
           "rule": rule, "alpha": alpha, **{k: v for k, v in settings.items() if k != "alpha"}, "extra": extra}
    if rule == "di":
        out["stability"] = [(r["step"], bi.effective_max_eig(r)) for r in model.di_state.stability]
        out["stabilisations"] = len(model.di_state.events)
    return out


def simulate(params: dict | None = None, progress=None) -> dict:
    p = {**default_params(), **(params or {})}
    unknown = set(p["conditions"]) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"conditions: unknown {sorted(unknown)}; choose from {', '.join(CONDITIONS)}")
    results = {"params": p}
    for kind, spec in TASKS.items():
        data = load_dataset(spec["task"], seed=p["seed"], n_train=p["n_train"], n_test=p["n_test"])
        names = [c for c in p["conditions"] if c not in spec["skip"]]
        results[kind] = {}
        for name in tqdm(names, desc=f"Fig. 3 {kind}", disable=progress is False, leave=False):
            results[kind][name] = _run_one(kind, name, p, data)
    return results


def _label(name):
    return name.upper().replace("-A0", " α=0").replace("-RINIT", " R-Init")


def plot(results: dict, axes) -> None:
    """axes: a 2 × 4 array — rows linear / nonlinear; columns NMSE (a, g), DI stability (c, h),
    DI-vs-NDI and DI-vs-PBP angles of δ_1 (d, f, i), angle of B to −Wᵀ (e, j)."""
    for row, kind in enumerate(("linear", "nonlinear")):
        res = results[kind]
        ax = axes[row][0]
        for name, r in res.items():
            ax.semilogy(r["epoch"], r["nmse"], ls="--" if r["rule"] == "ndi" else "-", lw=1, label=_label(name))
        ax.set_title(f"{kind}: test NMSE")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6, ncol=2)
        for name, r in res.items():
            if r["rule"] == "di" and r["stability"]:
                st = np.array(r["stability"])
                axes[row][1].plot(st[:, 0], st[:, 1], lw=0.8, label=_label(name))
            ep = [e["epoch"] for e in r["extra"]]
            if r["rule"] == "di" and r["extra"]:
                axes[row][2].plot(ep, [e["angle_ndi_deg"][0] for e in r["extra"]], lw=1, label=f"{_label(name)}∠NDI")
                axes[row][2].plot(ep, [e["angle_pbp_deg"][0] for e in r["extra"]], ":", lw=1, label=f"{_label(name)}∠PBP")
                axes[row][2].plot(ep, [e["angle_ndi_ungated_deg"][0] for e in r["extra"]], "-.", lw=1,
                                  label=f"{_label(name)}∠NDI w/o g'")
            if r["rule"] in ("di", "ndi") and r["extra"]:
                b = np.array([e["angle_b_wt_deg"] for e in r["extra"]])
                for j in range(b.shape[1]):
                    axes[row][3].plot(ep, b[:, j], "--" if j == b.shape[1] - 1 else "-", lw=1,
                                      label=f"{_label(name)} B_{j + 2}")
        axes[row][1].axhline(0, color="k", lw=0.5)
        axes[row][1].set_title("DI: max Re λ(S9)")
        axes[row][1].set_xlabel("step")
        axes[row][1].legend(fontsize=6)
        axes[row][2].set_title("angle of DI's δ_1 to NDI's / PBP's (deg)")
        axes[row][2].set_xlabel("epoch")
        axes[row][2].legend(fontsize=6, ncol=2)
        axes[row][3].set_title("angle(B_l, −W_lᵀ) (deg; dashed: output layer)")
        axes[row][3].set_xlabel("epoch")
        axes[row][3].legend(fontsize=5, ncol=2)


def summary(results: dict) -> dict:
    out = {}
    for kind in ("linear", "nonlinear"):
        res = results[kind]
        out[kind] = {}
        for name, r in res.items():
            row = {"nmse": "diverged" if r["diverged"] else round(r["nmse"][-1], 5)}
            if r["rule"] == "di" and r["extra"]:
                a = r["extra"][-1]
                row["angle_ndi_deg"] = [round(v, 2) for v in a["angle_ndi_deg"]]
                row["angle_pbp_deg"] = [round(v, 2) for v in a["angle_pbp_deg"]]
                row["angle_ndi_ungated_deg"] = [round(v, 2) for v in a["angle_ndi_ungated_deg"]]
                row["max_eig_final"] = float(f"{r['stability'][-1][1]:.4g}") if r["stability"] else None
                row["stabilisations"] = r["stabilisations"]
            if r["rule"] in ("di", "ndi") and r["extra"]:
                row["angle_b_wt_deg"] = [round(v, 1) for v in r["extra"][-1]["angle_b_wt_deg"]]
            out[kind][name] = row
    return out


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), metavar="NAME",
                    help=f"subset of {', '.join(CONDITIONS)} (default: all)")
    ap.add_argument("--di-method", choices=("steady", "euler"), help="how the condition 'di' runs")
    ap.add_argument("--variant-method", choices=("steady", "euler"), help="how DI conditions other than 'di' run")
    args = EX.parse(ap, argv)
    import json

    p = {**default_params(args.quick), **EX.seed_params(args)}
    if args.conditions:
        p["conditions"] = args.conditions
    for key in ("di_method", "variant_method"):
        if getattr(args, key):
            p[key] = getattr(args, key)
    res = simulate(p)
    out = args.out
    EX.figure(out / "fig3.png", plot, res, nrows=2, ncols=4, figsize=(19, 8), dpi=110, layout="tight")
    EX.save(out, res)
    s = summary(res)
    EX.save(out, s, name="summary.json")
    print(json.dumps(s, indent=2))
    print(f"figure: {out / 'fig3.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
