"""Cameron, Chen, Wagner & Sejnowski (poster), "Locally learning pseudoinverse feedback connections":
the linearised recirculation rules, trained concurrently on random mean-zero noise, drive the pair
(A, B) to a Moore–Penrose pseudoinverse pair — all four conditions

    ABA = A,   BAB = B,   (AB)ᵀ = AB,   (BA)ᵀ = BA      (poster's A ↔ our X = B as A⁺)

Phases per sample: ``h = A x``, ``x̂ = B h``, ``ĥ = A x̂``; updates ``ΔA = (h − ĥ)xᵀ``, ``ΔB = (x − x̂)hᵀ``
(plasticity.learned_feedback.recirculation_step).  Three settings are run on the same noise stream:

* ``online``   — one noise sample per update (the Brian2 circuit's setting; η constant);
* ``batch``    — the mean over ``batch`` samples per update;
* ``annealed`` — batch updates with η falling 10× per third of the run.

Plus the Brian2 recirculation circuit itself over the first ``circuit_trials`` online samples,
overlaid on the online twin (they agree to ≲1e-13).

Measured vs poster: the poster shows all four residuals converging.  Here AXA, XAX and (AX)ᵀ converge
exponentially to machine precision in every setting; (XA)ᵀ = XA (the part of B in the null space
of A) converges only in the mean, so its residual sits at a sampling floor ∝ √(η/batch) unless η is
annealed.

Run ``python examples/Cameron_2025/pinv.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import numpy as np

from bridge.app.examples import Example

NAME = "pinv"
EX = Example(__file__, seeds="single")

DEFAULTS = {"k": 10, "n": 30, "steps": 6000, "eta": 0.02, "batch": 64, "record_every": 50, "seed": 0,
            "circuit_trials": 600, "circuit": True}
QUICK = {"k": 4, "n": 8, "steps": 600, "record_every": 20, "circuit_trials": 120}

CONDITIONS = ("AXA = A", "XAX = X", "(AX)ᵀ = AX", "(XA)ᵀ = XA")
_KEYS = ("axa", "xax", "ax_sym", "xa_sym")


def simulate(params: dict | None = None) -> dict:
    from plasticity.learned_feedback import mp_residuals, recirculation_step, rel_error

    p = {**DEFAULTS, **(params or {})}
    rng = np.random.default_rng(p["seed"])
    k, n = int(p["k"]), int(p["n"])
    A0 = rng.standard_normal((k, n)) / np.sqrt(n)
    B0 = 0.1 * rng.standard_normal((n, k))
    out = {"params": p, "runs": {}}
    steps, eta, rec = int(p["steps"]), float(p["eta"]), int(p["record_every"])
    noise_rng = np.random.default_rng(p["seed"] + 1)
    for label, m, anneal in (("online", 1, False), ("batch", int(p["batch"]), False), ("annealed", int(p["batch"]), True)):
        A, B = A0.copy(), B0.copy()
        curve = {"step": [], **{key: [] for key in _KEYS}, "pinv_err": []}
        for s in range(steps + 1):
            if s % rec == 0:
                r = mp_residuals(A, B)
                curve["step"].append(s)
                for key in _KEYS:
                    curve[key].append(r[key])
                curve["pinv_err"].append(rel_error(B, np.linalg.pinv(A)))
            if s == steps:
                break
            lr = eta * (0.1 ** (3 * s // steps)) if anneal else eta
            A, B = recirculation_step(A, B, noise_rng.standard_normal((m, n)), lr, lr)
        out["runs"][label] = curve
    if p["circuit"]:
        from circuits._brian import quiet_brian
        from circuits.recirculation import build_recirculation, matrix_twin

        quiet_brian()
        T = int(p["circuit_trials"])
        noise = np.random.default_rng(p["seed"] + 2).standard_normal((T, n))
        c = build_recirculation(A0, B0, noise, eta_A=eta, eta_B=eta, name="recirc_pinv")
        pts = {"step": [], **{key: [] for key in _KEYS}}
        chunk = max(1, T // 6)
        while c.trials_done < T:
            c.run(min(chunk, T - c.trials_done))
            r = mp_residuals(*c.weights())
            pts["step"].append(c.trials_done)
            for key in _KEYS:
                pts[key].append(r[key])
        At, Bt, _ = matrix_twin(A0, B0, noise, eta_A=eta, eta_B=eta)
        A, B = c.weights()
        pts["max_rel_diff_to_twin"] = float(max(np.abs(A - At).max() / np.abs(At).max(),
                                                np.abs(B - Bt).max() / np.abs(Bt).max()))
        out["circuit"] = pts
    out["summary"] = {label: {key: r[key][-1] for key in _KEYS} | {"pinv_err": r["pinv_err"][-1]}
                      for label, r in out["runs"].items()}
    return out


def plot(results: dict, axes=None):
    import matplotlib.pyplot as plt

    runs = results["runs"]
    if axes is None:
        _, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.6), sharey=True)
    for ax, (label, r) in zip(axes, runs.items()):
        for i, (key, name) in enumerate(zip(_KEYS, CONDITIONS)):
            ax.semilogy(r["step"], r[key], color=f"C{i}", label=name)
            if label == "online" and "circuit" in results:
                ax.semilogy(results["circuit"]["step"], results["circuit"][key], "o", color=f"C{i}", ms=3)
        ax.set_title(f"{label}" + (" (dots: Brian2 circuit)" if label == "online" and "circuit" in results else ""),
                     fontsize=9)
        ax.set_xlabel("update")
    axes[0].set_ylabel("relative residual")
    axes[0].legend(fontsize=8)
    return axes


def main(argv=None) -> int:
    ap = EX.parser(__doc__)
    ap.add_argument("--no-circuit", action="store_true", help="skip the Brian2 circuit")
    a = EX.parse(ap, argv)
    res = simulate({**(QUICK if a.quick else {}), **EX.seed_params(a), **({"circuit": False} if a.no_circuit else {})})
    EX.save(a.out, res, plot, name=f"{NAME}.json", ncols=len(res["runs"]), figsize=(4.5 * len(res["runs"]), 3.6),
            sharey=True, constrained_layout=True)
    for label, s in res["summary"].items():
        print(f"{label:>9}: " + "  ".join(f"{k} {v:.1e}" for k, v in s.items()))
    if "circuit" in res:
        print(f"Brian2 circuit vs twin: max rel diff {res['circuit']['max_rel_diff_to_twin']:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(EX.run(main))
