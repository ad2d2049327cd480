"""Podlaski & Machens (2020), Fig. 4a: MNIST 784-1000-10 (tanh hidden layer, softmax cross-entropy)
trained with BP, FA, PBP, NDI and — unlike the paper, which used NDI as a proxy — fully simulated DI
(batched Euler dynamics of Algorithm 1 with the convergence stop, on every training example).

Settings (§7.5.4): inputs centred per pixel and scaled to unit overall variance; W ~ U(±0.01);
learning rate 1e-3, weight decay 1e-6; FA feedback U(±0.5); NDI and DI Tr-Init.  The paper trains
online for 15 epochs (BP 1.9 %, FA 1.7 %, PBP and NDI 2.7 % test error); the default here uses
mini-batches of 32 with learning rate 32·1e-3 (the same per-example step), 5 epochs.

What full DI shows here: DI's eq. 14 applies g to the error δ, never to the forward activity, so
for small errors its fixed point is eq. 10's operator *without* the g'(a) gate that NDI carries
(§4.2 says the derivative is "implicitly incorporated"; it is g'(0) = 1).  The control
``di-linear-g`` (that ungated operator, solved directly) trains like full DI; NDI does not.  Panel 2
tracks the largest real S9 eigenvalue, which drifts up towards 0 under DI training (SSA then acts).
``di-steady-nossa`` shows what happens without SSA (the solver then keeps returning eq. 15's fixed
point, which Algorithm 1 would no longer reach); ``di-gated`` is gated DI (NDI's fixed point).

    python examples/Podlaski_2020/mnist.py [--quick] [--conditions NAME ...] [--epochs N] [--n-train N]
                                           [--seed S] [--data-dir DIR] [--out DIR]
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

import bridge.inversion as bi
from bridge.app.examples import Example, positive_int
from bridge.app.runs import TrainConfig, build_model
from bridge.data import load_dataset
from bridge.losses import TeachingLoss
from bridge.train import train

#: condition → (rule, rule parameters).  "di-linear-g" is a control: DI's fixed point with linear g
#: in eq. 14 — eq. 10's operator without NDI's g'(a) gate, which is what DI tends to for small errors
#: (eq. 14 applies g to δ, not to the forward activity) — solved directly.  "di-steady" is DI's own
#: fixed point (eq. 15, tanh) solved directly (chord, then Newton) instead of simulated.
#: "di-around" (not in the paper) takes g around the forward activity, W[g(a + δ) − g(a)] in eq. 14,
#: which carries the g'(a) gate for small errors (plasticity.inversion.Around).  "di-steady-nossa" is
#: "di-steady" without SSA (§7.5.1's stabilisation off): the solver still returns eq. 15's fixed
#: point when S9 has an eigenvalue ≥ 0, although Algorithm 1's dynamics would then not reach it.
#: "di-gated" is the authors' later code, DI(around="gated"): linear controller, then × g'(a) of the
#: forward pass — its fixed point is NDI's (Algorithm 4), by the solver.
CONDITIONS = {
    "bp": ("bp", {}), "fa": ("fa", {}), "pbp": ("pbp", {}), "ndi": ("ndi", {}), "di": ("di", {}),
    "di-steady": ("di", {"method": "steady"}),
    "di-steady-nossa": ("di", {"method": "steady", "stabilize": False}),
    "di-gated": ("di", {"method": "steady", "around": "gated"}),
    "di-linear-g": ("di", {"transfer": "linear", "method": "steady"}),
    "di-around": ("di", {"method": "steady", "around": "activity"}),
}
RULES = tuple(CONDITIONS)


EX = Example(__file__, seeds="single")

def default_params(quick: bool = False) -> dict:
    return {"quick": quick, "seed": 0, "alpha": 1e-3, "data_dir": None,
            "n_train": 2000 if quick else None, "n_test": 1000 if quick else None,
            "epochs": 1 if quick else 5, "batch_size": 32, "lr_per_example": 1e-3, "weight_decay": 1e-6,
            "di_dt": 0.5, "di_tol": 1e-5, "di_max_steps": 2000, "conditions": list(CONDITIONS)}


def _standardise(data):
    """§7.5.4: subtract each pixel's mean, scale the overall variance to 1 (train statistics)."""
    import dataclasses

    mean = data.x_train.mean(0, keepdims=True)
    sd = (data.x_train - mean).std()
    return dataclasses.replace(data, x_train=((data.x_train - mean) / sd).astype(np.float32),
                               x_test=((data.x_test - mean) / sd).astype(np.float32))


def _run_one(name, p, data):
    rule, extra = CONDITIONS[name]
    rp = {**dict(method="euler", dt=p["di_dt"], tol=p["di_tol"], max_steps=p["di_max_steps"]), **extra} \
        if rule == "di" else {}
    cfg = TrainConfig(task="mnist", rule=rule, sizes=(784, 1000, 10), activation="tanh", output_activation="linear",
                      loss="ce", lr=p["lr_per_example"] * p["batch_size"], batch_size=p["batch_size"],
                      epochs=p["epochs"], weight_decay=p["weight_decay"], seed=p["seed"], weight_scale=0.01,
                      feedback_scale=0.5 if rule == "fa" else 0.01,
                      alpha=p["alpha"] if rule in ("ndi", "di") else None, rule_params=rp,
                      evals_per_epoch=2, quiet=True, probe_size=128).resolved()
    model = build_model(cfg, data.n_in, data.n_out)
    if rule == "ndi":
        with torch.no_grad():
            model.linears[1].feedback.copy_(-model.linears[1].weight.T)
    if rule == "di":
        bi.prepare(model)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            train(model, data, TeachingLoss("ce"), cfg, log=rows.append)
            diverged = None
        except FloatingPointError as e:
            diverged = str(e)
    out = {"epoch": [r["epoch"] for r in rows], "test_error": [r["test_error"] for r in rows],
           "seconds": rows[-1]["seconds"] if rows else None, "diverged": diverged}
    if rule == "di":
        st = model.di_state.stability
        out["max_eig"] = max(max(r["max_eig"]) for r in st)  # before SSA acted
        out["max_eig_final"] = bi.effective_max_eig(st[-1])
        out["max_eig_trace"] = [(r["step"], max(r["max_eig"])) for r in st[:: max(1, len(st) // 400)]]
        out["stabilisations"] = len(model.di_state.events)
        unstable = [r["step"] for r in st if max(r["max_eig"]) >= 0]  # S9 measured before any SSA
        out["unstable_steps"] = len(unstable)
        out["first_unstable_step"] = unstable[0] if unstable else None
        out["steps"] = model.di_state.step
        x, y = torch.as_tensor(data.x_test[:256]), torch.as_tensor(data.y_test[:256])
        out["angles"] = bi.di_angles(model, x, y, TeachingLoss("ce"))
    return out


def simulate(params: dict | None = None) -> dict:
    p = {**default_params(), **(params or {})}
    data = _standardise(load_dataset("mnist", data_dir=EX.data_dir(p["data_dir"]), seed=p["seed"], n_train=p["n_train"],
                                     n_test=p["n_test"]))
    unknown = set(p["conditions"]) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"conditions: unknown {sorted(unknown)}; choose from {', '.join(CONDITIONS)}")
    return {"params": p, **{name: _run_one(name, p, data) for name in p["conditions"]}}


def plot(results: dict, axes) -> None:
    """axes: two — test error per condition; largest real S9 eigenvalue of the DI conditions."""
    ax, ax2 = axes
    for name in results["params"]["conditions"]:
        r = results[name]
        ax.plot(r["epoch"], 100 * np.array(r["test_error"]), label=name.upper())
        if "max_eig_trace" in r:
            st = np.array(r["max_eig_trace"])
            ax2.plot(st[:, 0], st[:, 1], lw=0.8, label=name.upper())
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title("MNIST 784-1000-10")
    ax.legend()
    ax2.axhline(0, color="k", lw=0.5)
    ax2.set_xlabel("step")
    ax2.set_title("DI: max Re λ(S9) (SSA when ≥ 0)")
    ax2.legend()


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), metavar="NAME",
                    help=f"subset of {', '.join(CONDITIONS)} (default: all)")
    ap.add_argument("--epochs", type=positive_int, help="override the epochs")
    ap.add_argument("--n-train", type=positive_int, help="training images (default: all 60 000)")
    args = EX.parse(ap, argv)
    import json

    from bridge.app.runs import jsonable

    p = {**default_params(args.quick), **EX.seed_params(args), "data_dir": args.data_dir}
    for key in ("conditions", "epochs", "n_train"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    res = simulate(p)
    out = args.out
    EX.figure(out / "mnist.png", plot, res, ncols=2, figsize=(10, 4), dpi=110, layout="tight")
    s = {}
    for name in p["conditions"]:
        r = res[name]
        s[name] = {"test_error": r["test_error"][-1] if r["test_error"] else None, "seconds": r["seconds"],
                   "diverged": r["diverged"]}
        if "angles" in r:
            s[name].update({k: r[k] for k in ("max_eig", "max_eig_final", "stabilisations", "unstable_steps",
                                              "first_unstable_step", "steps")})
            s[name].update(r["angles"])
    EX.save(out, res)
    EX.save(out, s, name="summary.json")
    print(json.dumps(jsonable(s), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
