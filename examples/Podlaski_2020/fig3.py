"""Podlaski & Machens (2020), Fig. 3: linear (30-20-10) and nonlinear (30-20-10-10, tanh) regression
trained with BP, FA, PBP, NDI and DI.

Tasks (``TASKS``, rows of the figure):

* ``linear`` — Fig. 3a, c–f: y = T x, T ~ U(±1) (§7.5.2), lr 1e-2;
* ``linear-fixed-norm`` — Fig. 3b: the same task, every weight matrix's update rescaled to norm lr
  at every step (:class:`FixedNormSGD`), so that the rules differ only in the directions they find;
* ``nonlinear`` — Fig. 3g–k with Lillicrap et al.'s task-3 teacher (order-1 targets; ``bridge.data``);
* ``nonlinear-paper`` — Fig. 3g–k with the paper's own teacher (§7.5.3): the same architecture
  with weights AND biases ~ U(±0.01) (``teacher_scale``), so the targets have rms ~0.006.

Conditions (``CONDITIONS``): BP, FA, PBP; NDI and DI with Tr-Init at α = 1e-3, with Tr-Init at
α = 0 and with R-Init (SSA-stabilised) — the paper's "three realizations … with different weight
initialization and leak values" —, single-loop DI (SDI, Algorithm 3; nonlinear tasks only) and
gated DI (``di-gated``: ``DI(around="gated")``, the authors' later code — linear controller, then
the forward pass's g'(a); its fixed point is gated NDI, Algorithm 4; nonlinear tasks only, it is
DI itself in a linear network).

Panels (one row per task): NMSE over training (a, b, g), stability of DI — largest real eigenvalue
of S9 (c, h) —, the angle between DI's and NDI's hidden error signals (d, i) and between DI's and
PBP's (f), and the angle between each feedback matrix B_l and −W_lᵀ (e, j).  The angle column also
shows the angle to eq. 10's operator without NDI's g'(a) gate, which is what DI's eq. 14 (g applied
to δ) tends to for small errors: it separates the gate from the nonlinear inversion in the DI–NDI
angle.  With the paper's teacher the errors are small and the hidden units stay near a = 0
(g'(a) ≈ 1), so DI ≈ NDI; with order-1 targets they are not (``teacher_scale.py`` sweeps between).

Settings (§7.5.2–7.5.3): W ~ U(±0.01); FA feedback U(±0.5); NDI and DI Tr-Init ``B = −W(0)ᵀ``;
online learning; learning rate 1e-2 (linear) and 1e-3 (nonlinear, §7.5.3; the caption of Fig. 3
says 1e-2 for all); ‖δ‖ capped at 10 / 1 for DI, PBP and NDI (§7.5.1; ``max_norm``).  NMSE = test
NSE here (normalised by the target's power, not by the largest error across algorithms as in the paper).

    python examples/Podlaski_2020/fig3.py [--quick] [--tasks TASK ...] [--conditions NAME ...] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

import bridge.inversion as bi
from bridge.app.examples import Example
from bridge.app.runs import TrainConfig, build_model
from bridge.data import Dataset, load_dataset
from bridge.losses import TeachingLoss
from bridge.metrics import angle_deg
from bridge.train import train
from plasticity import forward, rule_parameters
from plasticity.inversion import StabilityError
from plasticity.transfers import get_transfer

#: Conditions: (rule, rule/feedback settings).  ``alpha=None`` takes ``params["alpha"]``; ``init``
#: "tr" is Tr-Init B = −W(0)ᵀ, "random" is R-Init (U(±0.01), SSA-stabilised for DI).  The paper's
#: Fig. 3 shows "three realizations of DI, NDI … with different weight initialization and leak
#: values" and SDI (single-loop DI, Alg. 3) for the nonlinear task only.  "di-gated" is not in the
#: paper's Fig. 3: DI(around="gated"), whose fixed point is Algorithm 4's gated NDI.
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
    "di-gated": ("di", {"init": "tr", "alpha": None, "around": "gated"}),
}
RULES = tuple(CONDITIONS)  # kept for callers of the older name
#: Rows of the figure.  ``data``: a ``bridge.data`` task, or "paper-teacher" (:func:`paper_teacher`);
#: ``update``: "sgd" (lr × update) or "fixed-norm" (Fig. 3b, :class:`FixedNormSGD`).  In a linear
#: network SDI and gated DI are DI itself (one hidden layer, g' = 1): skipped there.
TASKS = {
    "linear": dict(data="lillicrap-linear", lr=1e-2, max_norm=10.0, update="sgd", skip=("sdi", "di-gated"),
                   label="linear 30-20-10 (Fig. 3a)"),
    "linear-fixed-norm": dict(data="lillicrap-linear", lr=1e-2, max_norm=10.0, update="fixed-norm",
                              skip=("sdi", "di-gated"), label="linear, fixed-norm updates (Fig. 3b)"),
    "nonlinear": dict(data="lillicrap-nonlinear", lr=1e-3, max_norm=1.0, update="sgd", skip=(),
                      label="nonlinear, Lillicrap task-3 teacher (order-1 targets)"),
    "nonlinear-paper": dict(data="paper-teacher", lr=1e-3, max_norm=1.0, update="sgd", skip=(),
                            label="nonlinear, paper's teacher U(±0.01) (§7.5.3)"),
}
UPDATES = ("sgd", "fixed-norm")


def paper_teacher(n_train: int, n_test: int, seed: int = 0, scale: float = 0.01,
                  sizes: tuple[int, ...] = (30, 20, 10, 10)) -> Dataset:
    """The nonlinear regression data of §7.5.3: a teacher network of the student's architecture
    (tanh hidden layers, linear output) whose weights and biases are all ~ U(−scale, scale)
    (the paper: scale = 0.01), inputs x ~ N(0, I).  Teacher, training and test inputs come from
    independent streams spawned from ``seed``."""
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if int(n) != n or n < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {n!r}")
    r_teacher, r_train, r_test = (np.random.default_rng(c) for c in np.random.SeedSequence(int(seed)).spawn(3))
    layers = [(r_teacher.uniform(-scale, scale, (sizes[l + 1], sizes[l])),
               r_teacher.uniform(-scale, scale, sizes[l + 1])) for l in range(len(sizes) - 1)]

    def teach(x32):
        h = x32.astype(np.float64)
        for l, (W, b) in enumerate(layers):
            a = h @ W.T + b
            h = np.tanh(a) if l < len(layers) - 1 else a
        return h.astype(np.float32)

    x_train = r_train.standard_normal((int(n_train), sizes[0])).astype(np.float32)
    x_test = r_test.standard_normal((int(n_test), sizes[0])).astype(np.float32)
    teacher = {f"{k}{l}": v for l, (W, b) in enumerate(layers) for k, v in (("W", W), ("b", b))}
    return Dataset("podlaski-nonlinear", x_train, teach(x_train), x_test, teach(x_test), classification=False,
                   n_classes=None, note=f"Podlaski & Machens 2020 §7.5.3: {'-'.join(map(str, sizes))} tanh "
                   f"teacher, weights and biases ~ U(±{scale:g}), x ~ N(0, I)", teacher={**teacher, "scale": scale})


class FixedNormSGD(torch.optim.Optimizer):
    """Fig. 3b's fixed-norm updates: every parameter tensor (each W_l; each b_l, if any) moves by
    ``lr · ΔW/‖ΔW‖_F`` at every step, so all rules take steps of one length and differ only in
    direction (§5.1: "to probe the update directions that each algorithm finds").  A zero update
    stays zero."""

    def __init__(self, params, lr: float):
        if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        super().__init__(params, {"lr": float(lr)})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                norm = float(torch.linalg.vector_norm(p.grad))
                if norm > 0:
                    p.add_(p.grad, alpha=-group["lr"] / norm)


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
        "conditions": list(CONDITIONS), "tasks": list(TASKS), "teacher_scale": 0.01,
    }


def load_task(kind: str, p: dict) -> Dataset:
    """The data of row ``kind`` of ``TASKS`` (``teacher_scale`` sets the paper teacher's U(±scale))."""
    spec = TASKS[kind]
    if spec["data"] == "paper-teacher":
        return paper_teacher(p["n_train"], p["n_test"], seed=p["seed"], scale=p["teacher_scale"])
    return load_dataset(spec["data"], seed=p["seed"], n_train=p["n_train"], n_test=p["n_test"])


@torch.no_grad()
def mean_gates(model, x) -> list[float]:
    """Mean g'(a_l) of each hidden layer over the examples ``x`` (1 for a linear layer): where it is
    ≈ 1 NDI's gate (Algorithm 4) is ≈ the identity and eq. 14's DI can equal NDI."""
    Ws = [w.detach() for w in model.weights()]
    bs = [None if b is None else b.detach() for b in model.biases()]
    fwd = forward(Ws, bs, x.to(Ws[0].dtype), model.transfers)
    return [float(get_transfer(t).gate(a).mean()) for t, a in zip(model.transfers[:-1], fwd.As[:-1])]


@torch.no_grad()
def _same_start(model, cfg, data) -> None:
    """§7.5.2: "all algorithms began with exact copies" of W (rules without a feedback matrix draw
    fewer random numbers, so they take the forward weights of a rule with one); §7.5.3: "bias
    weights were initialized to zero"."""
    if model.linears[-1].feedback is None and len(model.linears) > 1:
        ref = build_model(dataclasses.replace(cfg, rule="fa", alpha=None, rule_params={}), data.n_in, data.n_out)
        for lin, src in zip(model.linears, ref.linears):
            lin.weight.copy_(src.weight)
    for lin in model.linears:
        if lin.bias is not None:
            lin.bias.zero_()


def _run_one(kind: str, name: str, p: dict, data) -> dict:
    spec = TASKS[kind]
    rule, settings = CONDITIONS[name]
    alpha = p["alpha"] if settings.get("alpha") is None else settings["alpha"]
    rp = {}
    if rule == "di":
        method = p["di_method"] if name == "di" else p["variant_method"]
        rp = dict(method=method, dt=p["di_dt"], tol=p["di_tol"], max_steps=p["di_max_steps"],
                  max_norm=spec["max_norm"], init=settings["init"], chain=settings.get("chain", "sequential"),
                  around=settings.get("around", "zero"))
    elif rule in ("pbp", "ndi"):
        rp = {"max_norm": spec["max_norm"]}
    task = "lillicrap-nonlinear" if spec["data"] == "paper-teacher" else spec["data"]  # the same network
    cfg = TrainConfig(task=task, rule=rule, lr=spec["lr"], batch_size=1, epochs=p["epochs"],
                      seed=p["seed"], weight_scale=0.01, feedback_scale=0.5 if rule == "fa" else 0.01,
                      alpha=alpha if "alpha" in rule_parameters(rule) else None,
                      rule_params=rp, n_train=p["n_train"], n_test=p["n_test"],
                      evals_per_epoch=p["evals_per_epoch"], dtype="float64", quiet=True, probe_size=128).resolved()
    model = build_model(cfg, data.n_in, data.n_out)
    _same_start(model, cfg, data)
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
        rec["gate_mean"] = mean_gates(model, px)
        extra.append(rec)

    diverged = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            opt = FixedNormSGD(model.parameters(), cfg.lr) if spec["update"] == "fixed-norm" else None
            train(model, data, loss, cfg, log=log, optimizer=opt)
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
    unknown = set(p["tasks"]) - set(TASKS)
    if unknown or not p["tasks"]:
        raise ValueError(f"tasks: unknown or none {sorted(unknown)}; choose from {', '.join(TASKS)}")
    results = {"params": p}
    for kind in [k for k in TASKS if k in p["tasks"]]:
        spec = TASKS[kind]
        if spec["update"] not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {spec['update']!r} (task {kind})")
        data = load_task(kind, p)
        names = [c for c in p["conditions"] if c not in spec["skip"]]
        results[kind] = {}
        for name in tqdm(names, desc=f"Fig. 3 {kind}", disable=progress is False, leave=False):
            results[kind][name] = _run_one(kind, name, p, data)
    return results


def _label(name):
    return name.upper().replace("-A0", " α=0").replace("-RINIT", " R-Init").replace("DI-GATED", "DI gated")


def _tasks(results):
    return [k for k in TASKS if k in results]


def plot(results: dict, axes) -> None:
    """axes: (rows, 4) — one row per task in ``results`` (``TASKS`` order: linear (a), linear with
    fixed-norm updates (b), nonlinear with Lillicrap's teacher, nonlinear with the paper's teacher
    (g)); columns NMSE, DI stability (c, h), DI-vs-NDI and DI-vs-PBP angles of δ_1 (d, f, i),
    angle of B to −Wᵀ (e, j)."""
    for row, kind in enumerate(_tasks(results)):
        res, title = results[kind], TASKS[kind]["label"]
        ax = axes[row][0]
        for name, r in res.items():
            ax.semilogy(r["epoch"], r["nmse"], ls="--" if r["rule"] == "ndi" else "-", lw=1, label=_label(name))
        ax.set_title(f"{title}\ntest NMSE", fontsize=8)
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
        axes[row][1].set_title(f"{title}\nDI: max Re λ(S9)", fontsize=8)
        axes[row][1].set_xlabel("step")
        axes[row][1].legend(fontsize=6)
        axes[row][2].set_title(f"{title}\nangle of DI's δ_1 to NDI's / PBP's (deg)", fontsize=8)
        axes[row][2].set_xlabel("epoch")
        axes[row][2].legend(fontsize=5, ncol=2)
        axes[row][3].set_title(f"{title}\nangle(B_l, −W_lᵀ) (deg; dashed: output layer)", fontsize=8)
        axes[row][3].set_xlabel("epoch")
        axes[row][3].legend(fontsize=5, ncol=2)


def summary(results: dict) -> dict:
    out = {}
    for kind in _tasks(results):
        res = results[kind]
        out[kind] = {"label": TASKS[kind]["label"]}
        for name, r in res.items():
            row = {"nmse": "diverged" if r["diverged"] else float(f"{r['nmse'][-1]:.4g}")}
            if r["extra"]:
                row["gate_mean"] = [round(v, 4) for v in r["extra"][-1]["gate_mean"]]
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
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), metavar="TASK",
                    help=f"subset of {', '.join(TASKS)} (default: all)")
    ap.add_argument("--teacher-scale", type=float, help="U(±scale) of the paper teacher's weights and biases "
                    "(task nonlinear-paper; default 0.01, §7.5.3)")
    ap.add_argument("--di-method", choices=("steady", "euler"), help="how the condition 'di' runs")
    ap.add_argument("--variant-method", choices=("steady", "euler"), help="how DI conditions other than 'di' run")
    args = EX.parse(ap, argv)
    import json

    p = {**default_params(args.quick), **EX.seed_params(args)}
    if args.conditions:
        p["conditions"] = args.conditions
    if args.tasks:
        p["tasks"] = args.tasks
    if args.teacher_scale is not None:
        if not (np.isfinite(args.teacher_scale) and args.teacher_scale > 0):
            ap.error(f"--teacher-scale must be a finite number > 0, got {args.teacher_scale}")
        p["teacher_scale"] = args.teacher_scale
    for key in ("di_method", "variant_method"):
        if getattr(args, key):
            p[key] = getattr(args, key)
    res = simulate(p)
    out = args.out
    rows = len(_tasks(res))
    EX.figure(out / "fig3.png", plot, res, nrows=rows, ncols=4, figsize=(19, 4.2 * rows), dpi=110, layout="tight",
              squeeze=False)
    EX.save(out, res)
    s = summary(res)
    EX.save(out, s, name="summary.json")
    print(json.dumps(s, indent=2))
    print(f"figure: {out / 'fig3.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
