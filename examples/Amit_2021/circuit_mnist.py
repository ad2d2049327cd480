"""Amit (2021): the Brian2 layered circuit learns MNIST online, side by side with the torch engine.

The circuit is :class:`circuits.amit.LayeredCircuit` (784-1000-10, saturated-linear hidden units,
linear output with the output error circuit reading the hinge signal of eq. 6, the shut-down gate
of eq. 3, mirrored Hebbian synapses W/R; one example per network step, no biases).  It runs with
``feedback_order='before_update'`` (all δ from the old R, then the Hebbian step), the order of the
torch engine: the bridge's online run (:func:`bridge.checks.core.train_online`'s model, URFB with
plain SGD, batch 1, float64) starts from the same W and R and sees the same examples in the same
order.  Rules: ``urfb`` (ε = 1), ``frfb`` (ε = 0) and ``urfb-50`` (URFB with separate 50 % random
masks on W and R, Amit §4).

Along the epoch, every ``--checkpoint`` examples, the largest relative difference
(``max|a − b| / max|b|``) of W and of R between circuit and torch is recorded; at the end both
nets are tested on the test images.  Requirement: W and R equal to ≤ 1e-9 (float64).  Every
example's output h_L (before its update) and teaching signal δ_L are compared as well: a hinge
threshold decision that flipped on rounding shows up as a δ_L mismatch (example, unit, margin
|h − (±1)|).  The closest approach of any hidden input to the eq. 3 gate (|a| = 1) and of any
output to its hinge threshold is reported on the torch side (example, unit, margin), so a run
that stays within 1e-9 also says how far it was from a flip.

Run ``python examples/Amit_2021/circuit_mnist.py --quick`` (784-100-10, 300 examples, numpy target,
seconds) or without ``--quick`` for one full epoch (60 000 examples, cython target, minutes).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path

import numpy as np

from bridge.app.examples import Example

#: rule → (ε of URFB, sparsity of W and R)
RULES = {"urfb": (1.0, None), "frfb": (0.0, None), "urfb-50": (1.0, 0.5)}
TOL = 1e-9

DEFAULTS = {
    "sizes": (784, 1000, 10),
    "rules": ["urfb"],
    "n_train": 60000,
    "n_test": 10000,
    "eta": 0.01,
    "mu": 1.0,
    "checkpoint": 5000,
    "seed": 0,
    "target": "cython",
    "data_dir": None,
    "circuit_test": True,  # also classify the test set with the circuit itself (plasticity off)
}
QUICK = {"sizes": (784, 100, 10), "n_train": 300, "n_test": 1000, "checkpoint": 100, "target": "numpy",
         "circuit_test": False}


class TorchOnline:
    """The engine's online URFB run (as :func:`bridge.checks.core.train_online`), kept alive
    between checkpoints; records per example the output h_L, δ_L and the threshold margins."""

    def __init__(self, sizes, W0s, R0s, *, epsilon, eta, mu, wmasks=None, rmasks=None):
        import torch

        import plasticity as P
        from bridge.losses import TeachingLoss
        from bridge.network import FeedbackMLP

        self.torch = torch
        self.model = FeedbackMLP(sizes, P.URFB(epsilon), activation="satlin", output_activation="linear",
                                 bias=False, input_feedback=True, generator=torch.Generator().manual_seed(0),
                                 dtype=torch.float64)
        with torch.no_grad():
            for l, lin in enumerate(self.model.linears):
                lin.weight.copy_(torch.as_tensor(W0s[l]))
                lin.feedback.copy_(torch.as_tensor(R0s[l]))
                if wmasks is not None:
                    lin.weight_mask = torch.as_tensor(wmasks[l], dtype=torch.float64)
                if rmasks is not None:
                    lin.feedback_mask = torch.as_tensor(rmasks[l], dtype=torch.float64)
        self.crit = TeachingLoss(P.Hinge(mu))
        self.hinge = P.Hinge(mu)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=eta)

    def train(self, X, labels):
        """Step through X; returns (outputs (n, C), δ_L (n, C), hidden margin (n, 3), output margin (n, 2)).

        Hidden margin per example: (min over hidden units of ||a| − 1|, layer, unit); output margin:
        (min over classes of |h_c − 1| (presented class) or |h_c + 1| (others), class)."""
        torch = self.torch
        Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
        T = torch.as_tensor(np.asarray(labels))
        C = self.model.sizes[-1]
        outs, dels = np.zeros((len(Xt), C)), np.zeros((len(Xt), C))
        hmarg, omarg = np.zeros((len(Xt), 3)), np.zeros((len(Xt), 2))
        Ws = [lin.weight for lin in self.model.linears]
        for k in range(len(Xt)):
            with torch.no_grad():  # margins from the weights this step sees
                h = Xt[k]
                best = (np.inf, 0, 0)
                for l, W in enumerate(Ws[:-1]):
                    a = W @ h
                    m = (a.abs() - 1).abs()
                    i = int(torch.argmin(m))
                    if float(m[i]) < best[0]:
                        best = (float(m[i]), l + 1, i)
                    h = a.clamp(-1, 1)
            hmarg[k] = best
            self.opt.zero_grad(set_to_none=True)
            y = self.model(Xt[k:k + 1])
            self.crit(y, T[k:k + 1]).backward()
            self.opt.step()
            yo = y.detach().numpy()[0]
            outs[k] = yo
            dels[k] = self.hinge.teaching(yo[None], np.asarray([int(T[k])]))[0]
            s = -np.ones(C)
            s[int(T[k])] = 1.0
            m = np.abs(yo - s)
            omarg[k] = (m.min(), m.argmin())
        return outs, dels, hmarg, omarg

    def weights(self):
        return ([lin.weight.detach().numpy().copy() for lin in self.model.linears],
                [lin.feedback.detach().numpy().copy() for lin in self.model.linears])


def _max_rel(As, Bs):
    from bridge.app.registry import max_rel_diff

    return max(max_rel_diff(a, b) for a, b in zip(As, Bs))


def _test_error(Ws, X, y):
    from plasticity.amit import default_transfers
    from plasticity.network import forward

    out = forward(Ws, None, np.asarray(X, dtype=np.float64), default_transfers(len(Ws))).output
    return float(np.mean(np.argmax(out, 1) != y))


def _log(msg: str) -> None:
    print(msg, flush=True)  # flushed: the full epoch runs for minutes, often with its output in a file


def run_rule(rule: str, p: dict, data, log=_log) -> dict:
    """One rule: circuit and torch from the same start over the same examples; returns the record."""
    import gc

    from circuits._brian import quiet_brian
    from circuits.amit import LayeredCircuit
    from plasticity import amit as PA

    quiet_brian()
    eps, sparsity = RULES[rule]
    sizes = tuple(p["sizes"])
    n = int(p["n_train"])
    X, y = data.x_train[:n].astype(np.float64), np.asarray(data.y_train[:n])
    Xt, yt = data.x_test.astype(np.float64), np.asarray(data.y_test)
    Ws, Rs, wm, rm = PA.random_init(sizes, np.random.default_rng(p["seed"] + 1), 1.0, sparsity)
    err0 = _test_error(Ws, Xt, yt)
    t0 = time.perf_counter()
    circ = LayeredCircuit(sizes, Ws, Rs, p["eta"], eps, p["mu"], wmasks=wm, rmasks=rm,
                          feedback_order="before_update", target=p["target"])
    t_build = time.perf_counter() - t0
    ref = TorchOnline(sizes, Ws, Rs, epsilon=eps, eta=p["eta"], mu=p["mu"], wmasks=wm, rmasks=rm)
    t_circ = t_torch = 0.0
    checkpoints = []
    outs_c, outs_t, dels_c, dels_t, hm, om = [], [], [], [], [], []
    step = int(p["checkpoint"])
    for k in range(0, n, step):
        kk = min(n, k + step)
        t1 = time.perf_counter()
        rec = circ.train(X[k:kk], y[k:kk])
        t2 = time.perf_counter()
        o, d, h, m = ref.train(X[k:kk], y[k:kk])
        t3 = time.perf_counter()
        t_circ += t2 - t1
        t_torch += t3 - t2
        outs_c.append(rec.outputs), dels_c.append(rec.deltas), outs_t.append(o), dels_t.append(d)
        hm.append(h), om.append(m)
        Wc, Rc = circ.weights()
        Wt, Rt = ref.weights()
        cp = {"examples": kk, "W": _max_rel(Wc, Wt), "R": _max_rel(Rc, Rt),
              "online_error_circuit": float(np.mean(np.argmax(rec.outputs, 1) != y[k:kk])),
              "online_error_torch": float(np.mean(np.argmax(o, 1) != y[k:kk]))}
        checkpoints.append(cp)
        if log:
            log(f"{rule:8s} {kk:6d} examples: max rel diff W {cp['W']:.1e}, R {cp['R']:.1e}; online error "
                f"circuit {cp['online_error_circuit']:.3f}, torch {cp['online_error_torch']:.3f} "
                f"(circuit {t_circ:.0f} s, torch {t_torch:.0f} s)")
    outs_c, outs_t = np.concatenate(outs_c), np.concatenate(outs_t)
    dels_c, dels_t = np.concatenate(dels_c), np.concatenate(dels_t)
    hm, om = np.concatenate(hm), np.concatenate(om)
    from bridge.app.registry import max_rel_diff

    flips = np.argwhere(dels_c != dels_t)
    flip_list = [{"example": int(e), "unit": int(c), "circuit_h": float(outs_c[e, c]), "torch_h": float(outs_t[e, c]),
                  "margin": float(min(abs(outs_t[e, c] - 1), abs(outs_t[e, c] + 1)))} for e, c in flips[:20]]
    ih, io = int(np.argmin(hm[:, 0])), int(np.argmin(om[:, 0]))
    Wc, Rc = circ.weights()
    Wt, Rt = ref.weights()
    res = {
        "rule": rule, "epsilon": eps, "sparsity": sparsity, "sizes": list(sizes), "n_train": n,
        "checkpoints": checkpoints,
        "max_W": max(c["W"] for c in checkpoints), "max_R": max(c["R"] for c in checkpoints),
        "max_output": max_rel_diff(outs_c, outs_t),
        "delta_flips": int(len(flips)), "flips": flip_list,
        "closest_gate": {"example": ih, "layer": int(hm[ih, 1]), "unit": int(hm[ih, 2]), "margin": float(hm[ih, 0])},
        "closest_hinge": {"example": io, "unit": int(om[io, 1]), "margin": float(om[io, 0])},
        "test_error_start": err0,
        "test_error_circuit": _test_error(Wc, Xt, yt),
        "test_error_torch": _test_error(Wt, Xt, yt),
        "online_error_circuit": [float(v) for v in np.argmax(outs_c, 1) != y],
        "seconds_build": t_build, "seconds_circuit": t_circ, "seconds_torch": t_torch,
    }
    if p.get("circuit_test"):  # the circuit itself, plasticity off (η = 0), on the test images
        t1 = time.perf_counter()
        pred = circ.predict(Xt)
        res["test_error_circuit_brian2"] = float(np.mean(np.argmax(pred, 1) != yt))
        res["seconds_circuit_test"] = time.perf_counter() - t1
    res["ok"] = bool(max(res["max_W"], res["max_R"]) <= TOL)
    if log:
        extra = (f", circuit's own forward {res['test_error_circuit_brian2']:.4f}"
                 if "test_error_circuit_brian2" in res else "")
        log(f"{rule:8s} done: max rel diff over the epoch W {res['max_W']:.1e}, R {res['max_R']:.1e} "
            f"(≤ {TOL:g}: {res['ok']}), outputs {res['max_output']:.1e}, δ_L flips {res['delta_flips']}; "
            f"test error start {err0:.4f} → circuit {res['test_error_circuit']:.4f}{extra}, "
            f"torch {res['test_error_torch']:.4f}; closest gate margin {res['closest_gate']['margin']:.2e} "
            f"(example {ih}), closest hinge margin {res['closest_hinge']['margin']:.2e} (example {io})")
    del circ
    gc.collect()
    return res


EX = Example(__file__, seeds="single")


def simulate(params: dict | None = None, *, log=_log) -> dict:
    """Run every rule in ``params['rules']``; returns ``{"params", "runs", "machine"}``."""
    from bridge.data import load_dataset

    p = {**DEFAULTS, **(params or {})}
    for r in p["rules"]:
        if r not in RULES:
            raise ValueError(f"unknown rule {r!r}; valid: {', '.join(RULES)}")
    data = load_dataset("mnist", data_dir=p["data_dir"], n_train=p["n_train"], n_test=p["n_test"])
    runs = [run_rule(r, p, data, log) for r in p["rules"]]
    import torch

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    return {"params": p, "runs": runs, "machine": machine}


def plot(results: dict, axes) -> None:
    """Left: max relative W and R difference circuit vs torch along the epoch; right: online error
    (moving mean) of the circuit and final test errors."""
    ax = axes[0]
    for i, r in enumerate(results["runs"]):
        ex = [c["examples"] for c in r["checkpoints"]]
        ax.semilogy(ex, [max(c["W"], 1e-300) for c in r["checkpoints"]], "o-", color=f"C{i}", label=f"{r['rule']} W")
        ax.semilogy(ex, [max(c["R"], 1e-300) for c in r["checkpoints"]], "s--", color=f"C{i}", label=f"{r['rule']} R")
    ax.axhline(TOL, color="k", ls=":", label="1e-9")
    ax.set(xlabel="examples", ylabel="max rel diff circuit vs torch", title="Brian2 circuit vs torch engine")
    ax.legend(fontsize=7)
    ax = axes[1]
    for i, r in enumerate(results["runs"]):
        e = np.asarray(r["online_error_circuit"])
        w = max(1, min(1000, len(e) // 10))
        ax.plot(np.arange(w, len(e) + 1), np.convolve(e, np.ones(w) / w, mode="valid"), color=f"C{i}",
                label=f"{r['rule']} (test: circuit {r['test_error_circuit']:.3f}, torch {r['test_error_torch']:.3f})")
    ax.set(xlabel="example", ylabel="online error (before update)", title="the circuit learning MNIST online")
    ax.legend(fontsize=7)


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--n-train", type=int, help="first N training images (default all 60000: one epoch)")
    ap.add_argument("--n-test", type=int, help="first N test images (default all 10000)")
    ap.add_argument("--rules", nargs="+", choices=list(RULES), help="default urfb")
    ap.add_argument("--hidden", type=int, help="hidden width (default 1000; 100 with --quick)")
    ap.add_argument("--checkpoint", type=int, help="compare W and R every N examples (default 5000)")
    ap.add_argument("--eta", type=float, help=f"learning rate (default {DEFAULTS['eta']})")
    ap.add_argument("--target", choices=("numpy", "cython"), help="Brian2 code generation (default cython)")
    args = EX.parse(ap, argv)
    if args.checkpoint is not None and args.checkpoint < 1:
        ap.error("--checkpoint must be ≥ 1")
    params = {**(dict(QUICK) if args.quick else {}), **EX.seed_params(args)}
    for k in ("n_train", "n_test", "rules", "checkpoint", "eta", "target"):
        v = getattr(args, k)
        if v is not None:
            params[k] = v
    params["data_dir"] = EX.data_dir(args.data_dir)
    if args.hidden is not None:
        params["sizes"] = (784, args.hidden, 10)
    out = Path(args.out)
    t0 = time.perf_counter()
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        limit = contextlib.nullcontext()
    with limit:
        results = simulate(params)
    results["seconds"] = time.perf_counter() - t0
    EX.save(out, results, name="results.json")
    EX.figure(out / "circuit_mnist.png", plot, results, ncols=2, figsize=(12, 4))
    bad = [r["rule"] for r in results["runs"] if not r["ok"]]
    print(f"wrote {out}/ ({results['seconds']:.0f} s); W and R ≤ {TOL:g} along the epoch: "
          f"{'all rules' if not bad else 'NOT for ' + ', '.join(bad)}")
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
