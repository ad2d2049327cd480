"""Podlaski & Machens (2020), Fig. 3: linear (30-20-10) and nonlinear (30-20-10-10, tanh) regression
trained with BP, FA, PBP, NDI and DI.

Panels: NMSE over training (a, g), stability of DI — largest real eigenvalue of S9 (c, h) —, the
angle between DI's and NDI's hidden error signals (d, i) and between DI's and PBP's (f).

Settings (§7.5.2–7.5.3): W ~ U(±0.01); FA feedback U(±0.5); NDI and DI Tr-Init ``B = −W(0)ᵀ``;
online learning; learning rate 1e-2 (linear) and 1e-3 (nonlinear); ‖δ‖ capped at 10 / 1 for DI, PBP
and NDI (§7.5.1; ``max_norm``).  NMSE = test NSE here
(normalised by the target's power, not by the largest error across algorithms as in the paper).

    python examples/Podlaski_2020/fig3.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import bridge.inversion as bi
from bridge.data import load_dataset
from bridge.losses import TeachingLoss
from bridge.train import TrainConfig, build_model, train

RULES = ("bp", "fa", "pbp", "ndi", "di")
TASKS = {
    "linear": dict(task="lillicrap-linear", lr=1e-2, max_norm=10.0),
    "nonlinear": dict(task="lillicrap-nonlinear", lr=1e-3, max_norm=1.0),
}


def default_params(quick: bool = False) -> dict:
    return {
        "quick": quick, "seed": 0, "alpha": 1e-3,
        "n_train": 200 if quick else 1000, "n_test": 200 if quick else 1000,
        "epochs": 2 if quick else 10, "evals_per_epoch": 4 if quick else 5,
        "di_method": "steady" if quick else "euler", "di_dt": 0.5, "di_tol": 1e-6, "di_max_steps": 4000,
    }


def _run_one(kind: str, rule: str, p: dict, data) -> dict:
    spec = TASKS[kind]
    rp = {}
    if rule == "di":
        rp = dict(method=p["di_method"], dt=p["di_dt"], tol=p["di_tol"], max_steps=p["di_max_steps"],
                  max_norm=spec["max_norm"])
    elif rule in ("pbp", "ndi"):
        rp = {"max_norm": spec["max_norm"]}
    cfg = TrainConfig(task=spec["task"], rule=rule, lr=spec["lr"], batch_size=1, epochs=p["epochs"],
                      seed=p["seed"], weight_scale=0.01, feedback_scale=0.5 if rule == "fa" else 0.01,
                      alpha=p["alpha"], rule_params=rp, n_train=p["n_train"], n_test=p["n_test"],
                      evals_per_epoch=p["evals_per_epoch"], dtype="float64", quiet=True, probe_size=128).resolved()
    model = build_model(cfg, data.n_in, data.n_out)
    if rule == "ndi":  # Tr-Init for NDI as for DI
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
        if rule == "di":
            extra.append({"epoch": row["epoch"], **bi.di_angles(model, px, py, loss)})

    diverged = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            train(model, data, loss, cfg, log=log)
        except FloatingPointError as e:  # a run that blows up is reported, not hidden
            diverged = str(e)
    out = {"epoch": [r["epoch"] for r in rows], "nmse": [r["test_nse"] for r in rows], "diverged": diverged}
    if rule == "di":
        out["stability"] = [(r["step"], max(r["max_eig"])) for r in model.di_state.stability]
        out["angles"] = extra
        out["stabilisations"] = len(model.di_state.events)
    return out


def simulate(params: dict | None = None) -> dict:
    p = {**default_params(), **(params or {})}
    results = {"params": p}
    for kind, spec in TASKS.items():
        data = load_dataset(spec["task"], seed=p["seed"], n_train=p["n_train"], n_test=p["n_test"])
        results[kind] = {rule: _run_one(kind, rule, p, data) for rule in RULES}
    return results


def plot(results: dict, axes) -> None:
    """axes: a 2 × 3 array — rows linear / nonlinear; columns NMSE, DI stability, DI angles."""
    for row, kind in enumerate(("linear", "nonlinear")):
        res = results[kind]
        ax = axes[row][0]
        for rule in RULES:
            ax.semilogy(res[rule]["epoch"], res[rule]["nmse"], label=rule.upper())
        ax.set_title(f"{kind}: test NMSE")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        st = np.array(res["di"]["stability"])
        axes[row][1].plot(st[:, 0], st[:, 1], lw=0.8)
        axes[row][1].axhline(0, color="k", lw=0.5)
        axes[row][1].set_title("DI: max Re λ(S9)")
        axes[row][1].set_xlabel("step")
        ang = res["di"]["angles"]
        ep = [a["epoch"] for a in ang]
        for key, ls in (("angle_ndi_deg", "-"), ("angle_pbp_deg", "--")):
            vals = np.array([a[key] for a in ang])
            for j in range(vals.shape[1]):
                axes[row][2].plot(ep, vals[:, j], ls, label=f"DI∠{key[6:9].upper()} δ_{j + 1}")
        axes[row][2].set_title("angles of DI's error signals (deg)")
        axes[row][2].set_xlabel("epoch")
        axes[row][2].legend(fontsize=7)


def summary(results: dict) -> dict:
    out = {}
    for kind in ("linear", "nonlinear"):
        res = results[kind]
        out[kind] = {rule: ("diverged" if res[rule]["diverged"] else round(res[rule]["nmse"][-1], 5))
                     for rule in RULES}
        a = res["di"]["angles"][-1]
        out[kind]["di_angle_ndi_deg"] = [round(v, 2) for v in a["angle_ndi_deg"]]
        out[kind]["di_angle_pbp_deg"] = [round(v, 2) for v in a["angle_pbp_deg"]]
        out[kind]["di_max_eig_final"] = round(res["di"]["stability"][-1][1], 5)
        out[kind]["di_stabilisations"] = res["di"]["stabilisations"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (the smoke-test size)")
    ap.add_argument("--out", default="runs/podlaski_fig3")
    args = ap.parse_args(argv)
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = simulate(default_params(args.quick))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    plot(res, axes)
    fig.tight_layout()
    fig.savefig(out / "fig3.png", dpi=110)
    plt.close(fig)
    s = summary(res)
    (out / "summary.json").write_text(json.dumps(s, indent=2))
    print(json.dumps(s, indent=2))
    print(f"figure: {out / 'fig3.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
