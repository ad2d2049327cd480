"""Cross-checks and demos of the learned-feedback circuits (node perturbation, recirculation).

Checks (``credit crossval``), each float64 with the tolerance written next to it:

* ``recirculation-circuit``: the Brian2 recirculation circuit (A and B learning, poster rules) vs its
  matrix twin on the same noise samples — weights after every trial, ≤ 1e-9 relative.
* ``recirculation-circuit-rf``: the same with A fixed (A = a forward weight W_l, the RF setting).
* ``np-circuit``: the Brian2 node-perturbation circuit (noisy hidden units, loss unit, R learning by
  least squares) vs its matrix twin on the same noise samples, ≤ 1e-9 relative.
* ``np-torch-step`` / ``rf-torch-step``: one training step of the torch engine (backward + hook +
  optimizer) vs the numpy reference step on the same noise, ≤ 1e-12 relative.
* ``rf-exact-closed-form``: rf-exact's teaching signals vs ``δ_{l−1} = g'(a) ∘ W_l⁺ δ_l`` with each ``W_l⁺``
  known in closed form (W built from its SVD factors), linear and tanh, ≤ 1e-12.

Demos (``credit circuit NAME``): ``recirculation`` (the four Moore–Penrose residuals falling, circuit
and twin overlaid) and ``node-perturbation`` (‖R − W2ᵀ‖/‖W2‖ over trials for three noise levels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import plasticity as P
from plasticity.learned_feedback import NP, RF, RFExact, mp_residuals, rel_error

from .. import learned_feedback as BLF
from ..app.registry import CheckResult, max_rel_diff, register_check, register_demo
from ..losses import TeachingLoss
from ..network import FeedbackMLP
from . import reference

TOL_CIRCUIT = 1e-9  # Brian2 numpy target vs numpy twin, same arithmetic up to summation order
TOL_ENGINE = 1e-12  # torch float64 vs numpy float64 reference, a handful of matmuls


def _recirc_problem(seed, k=3, n=5, trials=200):
    rng = np.random.default_rng(seed)
    A0 = rng.standard_normal((k, n)) / np.sqrt(n)
    B0 = 0.1 * rng.standard_normal((n, k))
    noise = rng.standard_normal((trials, n))
    return A0, B0, noise


def _run_recirc_pair(seed, eta_A, eta_B, trials, decay=0.0):
    from circuits._brian import quiet_brian
    from circuits.recirculation import build_recirculation, matrix_twin

    quiet_brian()
    A0, B0, noise = _recirc_problem(seed, trials=trials)
    c = build_recirculation(A0, B0, noise, eta_A=eta_A, eta_B=eta_B, decay=decay)
    c.run()
    A, B = c.weights()
    At, Bt, _ = matrix_twin(A0, B0, noise, eta_A=eta_A, eta_B=eta_B, decay=decay)
    # the last trial's activities, recomputed from the twin's weights before that trial
    Ap, Bp, _ = matrix_twin(A0, B0, noise[:-1], eta_A=eta_A, eta_B=eta_B, decay=decay)
    x = noise[-1]
    h = Ap @ x
    xhat = Bp @ h
    act = c.activity()
    diffs = [max_rel_diff(A, At), max_rel_diff(B, Bt), max_rel_diff(act["h"], h), max_rel_diff(act["xhat"], xhat),
             max_rel_diff(act["hhat"], Ap @ xhat)]
    return max(diffs), (A, B, At, Bt, A0, B0)


@register_check("recirculation-circuit")
def check_recirculation(opts) -> list[CheckResult]:
    trials = opts.examples or 200
    d, (A, B, *_rest) = _run_recirc_pair(opts.seed, 0.02, 0.02, trials)
    res = mp_residuals(A, B)
    return [CheckResult("recirculation-circuit", d, TOL_CIRCUIT,
                        f"{trials} trials, A and B learning; MP residuals after: "
                        + ", ".join(f"{k} {v:.1e}" for k, v in res.items()))]


@register_check("recirculation-circuit-rf")
def check_recirculation_rf(opts) -> list[CheckResult]:
    trials = opts.examples or 200
    d, _ = _run_recirc_pair(opts.seed + 1, 0.0, 0.05, trials, decay=1e-3)
    return [CheckResult("recirculation-circuit-rf", d, TOL_CIRCUIT, f"{trials} trials, A fixed, decay 1e-3")]


def _np_problem(seed, n_in=4, n_h=5, n_out=3, trials=200):
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((n_h, n_in)) / np.sqrt(n_in)
    W2 = rng.standard_normal((n_out, n_h)) / np.sqrt(n_h)
    R0 = 0.1 * rng.standard_normal((n_h, n_out))
    X = rng.standard_normal((trials, n_in))
    Y = rng.standard_normal((trials, n_out))
    xis = rng.standard_normal((trials, n_h))
    return W1, W2, R0, X, Y, xis


@register_check("np-circuit")
def check_np_circuit(opts) -> list[CheckResult]:
    from circuits._brian import quiet_brian
    from circuits.node_perturbation import build_np_circuit, matrix_twin

    quiet_brian()
    trials = opts.examples or 200
    out = []
    for transfer, c_h in (("tanh", 0.1), ("linear", 0.01)):
        W1, W2, R0, X, Y, xis = _np_problem(opts.seed, trials=trials)
        c = build_np_circuit(W1, W2, R0, X, Y, xis, c_h=c_h, eta=0.05, transfer=transfer,
                             name=f"npc_{transfer}")
        c.run()
        Rt, _ = matrix_twin(W1, W2, R0, X, Y, xis, c_h=c_h, eta=0.05, transfer=transfer)
        R = c.feedback()
        out.append(CheckResult(f"np-circuit-{transfer}", max_rel_diff(R, Rt), TOL_CIRCUIT,
                               f"{trials} trials, c_h {c_h}; rel‖R−W2ᵀ‖ {rel_error(R0, W2.T):.2f} → "
                               f"{rel_error(R, W2.T):.2f}"))
    return out


def _engine_state(model):
    Ws = [w.detach().numpy().copy() for w in model.weights()]
    bs = [b.detach().numpy().copy() for b in model.biases()]
    Rs = [None if r is None else r.detach().numpy().copy() for r in model.feedbacks()]
    return Ws, bs, Rs


def _one_engine_step(model, x, y, crit, lr):
    """One plain-loop step: the network's engine does the rule's extra work inside backward."""
    from bridge.train import training_step

    training_step(model, crit, torch.optim.SGD(model.parameters(), lr=lr), x, y)


#: plain-loop steps of the engine checked against the independent reference
ENGINE_STEPS = 5


def _compare(model, Ws, Rs):
    return max([max_rel_diff(l.weight.detach(), w) for l, w in zip(model.linears, Ws)]
               + [max_rel_diff(l.feedback.detach(), r) for l, r in zip(model.linears, Rs) if r is not None])


@register_check("np-torch-step")
def check_np_engine(opts) -> list[CheckResult]:
    """The engine's NP (noisy pass in the loss, least squares in the backward) in a plain loop for
    ENGINE_STEPS steps, against :func:`bridge.checks.reference.np_step_for` — a numpy implementation
    that shares no code with the rule — on the same noise."""
    out = []
    for mode in ("layerwise", "direct"):
        rule = NP(c_h=0.05, feedback_lr=2.0, ridge=1e-3, mode=mode, n_samples=2, seed=opts.seed)
        model = FeedbackMLP((6, 5, 4, 3), rule, activation="tanh", generator=torch.Generator().manual_seed(opts.seed),
                            dtype=torch.float64)
        twin = FeedbackMLP((6, 5, 4, 3), rule, activation="tanh", generator=torch.Generator().manual_seed(opts.seed),
                           dtype=torch.float64)  # its engine replays the same noise stream
        rng = np.random.default_rng(opts.seed)
        Ws, bs, Rs = _engine_state(model)
        for _ in range(ENGINE_STEPS):
            x, y = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
            xis = [[a.numpy() for a in sample] for sample in BLF.draw_np_noise(twin, 8)]
            _one_engine_step(model, torch.tensor(x), torch.tensor(y), TeachingLoss("ce"), 0.1)
            Ws, bs, Rs = reference.np_step_for(rule, Ws, bs, Rs, x, y, ["tanh", "tanh", "linear"], "ce", 0.1, xis)
        out.append(CheckResult(f"np-torch-step-{mode}", _compare(model, Ws, Rs), TOL_ENGINE,
                               f"{ENGINE_STEPS} plain-loop steps vs an independent numpy NP"))
    return out


@register_check("rf-torch-step")
def check_rf_engine(opts) -> list[CheckResult]:
    """The engine's RF (recirculation in the backward) in a plain loop for ENGINE_STEPS steps, against
    :func:`bridge.checks.reference.rf_step_for` (independent numpy) on the same noise."""
    rule = RF(noise_std=0.5, feedback_lr=2.0, n_noise=4, decay=0.01, forward_recirculation=True, seed=opts.seed)
    model = FeedbackMLP((6, 5, 4, 3), rule, activation="tanh", generator=torch.Generator().manual_seed(opts.seed),
                        dtype=torch.float64)
    twin = FeedbackMLP((6, 5, 4, 3), rule, activation="tanh", generator=torch.Generator().manual_seed(opts.seed),
                       dtype=torch.float64)
    rng = np.random.default_rng(opts.seed)
    Ws, bs, Rs = _engine_state(model)
    for _ in range(ENGINE_STEPS):
        x, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 3))
        xis = [None if a is None else a.numpy() for a in BLF.draw_rf_noise(twin)]
        _one_engine_step(model, torch.tensor(x), torch.tensor(y), TeachingLoss("mse"), 0.05)
        Ws, bs, Rs = reference.rf_step_for(rule, Ws, bs, Rs, x, y, ["tanh", "tanh", "linear"], "mse", 0.05, xis)
    return [CheckResult("rf-torch-step", _compare(model, Ws, Rs), TOL_ENGINE,
                        f"{ENGINE_STEPS} plain-loop steps (forward recirculation on) vs an independent numpy RF")]


def _known_pinv_layer(rng, d_out, d_in):
    """``(W, W⁺)`` with ``W = U diag(s) Vᵀ`` built from random orthonormal factors, so that its
    pseudoinverse is known in closed form, ``W⁺ = V diag(1/s) Uᵀ`` — no pinv, no solve."""
    k = min(d_out, d_in)
    U, _ = np.linalg.qr(rng.standard_normal((d_out, k)))
    V, _ = np.linalg.qr(rng.standard_normal((d_in, k)))
    s = rng.uniform(0.5, 2.0, k)
    return (U * s) @ V.T, (V / s) @ U.T


@register_check("rf-exact-closed-form")
def check_rf_exact(opts) -> list[CheckResult]:
    """rf-exact's teaching signals (plasticity's forward, output signal and ``RFExact.propagate``) against
    ``δ_{l−1} = g'(a_{l−1}) ∘ (W_l⁺ δ_l)`` with every ``W_l⁺`` known by construction (SVD factors) and
    ``δ_L = y* − y`` written out: linear 9-7-5-3 (``δ_l = (Π_{i>l} W_i⁺) e``) and tanh 9-7-5-3."""
    rng = np.random.default_rng(opts.seed)
    sizes = (9, 7, 5, 3)
    pairs = [_known_pinv_layer(rng, sizes[i + 1], sizes[i]) for i in range(3)]
    Ws, pinvs = [w for w, _ in pairs], [p for _, p in pairs]
    x, y = rng.standard_normal((4, 9)), rng.standard_normal((4, 3))
    out = []
    for act in ("linear", "tanh"):
        tr = [act, act, "linear"]
        fwd = P.forward(Ws, None, x, tr)
        ds = P.teaching_signals(RFExact(), Ws, None, fwd, P.output_signal(P.MSE(), fwd, y, "linear"), tr)
        # the reference, from the closed form only
        hs, As = [x], []
        for l, W in enumerate(Ws):
            As.append(hs[-1] @ W.T)
            hs.append(np.tanh(As[-1]) if act == "tanh" and l < 2 else As[-1])
        want = [None, None, y - hs[-1]]
        for l in (2, 1):
            gate = 1.0 - np.tanh(As[l - 1]) ** 2 if act == "tanh" else 1.0
            want[l - 1] = gate * (want[l] @ pinvs[l].T)
        d = max(max_rel_diff(a, b) for a, b in zip(ds, want))
        # a few products of 9×9 at most, pinv by SVD on one side: ~1e-15 relative
        out.append(CheckResult(f"rf-exact-closed-form[{act}]", d, TOL_ENGINE,
                               "δ_{l−1} = g'(a) ∘ W_l⁺ δ_l, W_l⁺ = V S⁻¹ Uᵀ by construction, 9-7-5-3"))
    return out


# ---------------------------------------------------------------------------------------------------
# demos
# ---------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib.pyplot as plt

    return plt


@register_demo("recirculation")
def demo_recirculation(out: Path, seed: int = 0) -> list[Path]:
    """Moore–Penrose residuals of B as A⁺ over trials: Brian2 circuit (markers) over the matrix twin
    (lines), A and B learning concurrently (the poster's panel) from one noise stream."""
    from circuits._brian import quiet_brian
    from circuits.recirculation import build_recirculation, matrix_twin

    quiet_brian()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials, chunk = 1500, 100
    rng = np.random.default_rng(seed)
    A0 = rng.standard_normal((3, 6)) / np.sqrt(6)
    B0 = 0.1 * rng.standard_normal((6, 3))
    noise = rng.standard_normal((trials, 6))
    eta = 0.01
    _, _, hist = matrix_twin(A0, B0, noise, eta_A=eta, eta_B=eta, record_every=10)
    c = build_recirculation(A0, B0, noise[: 5 * chunk], eta_A=eta, eta_B=eta, name="recirc_demo")
    circ = [(0, *c.weights())]
    for _ in range(5):
        c.run(chunk)
        circ.append((c.trials_done, *c.weights()))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"axa": "AXA = A", "xax": "XAX = X", "ax_sym": "(AX)ᵀ = AX", "xa_sym": "(XA)ᵀ = XA"}
    for i, key in enumerate(labels):
        col = f"C{i}"
        ax.semilogy([t for t, *_ in hist], [mp_residuals(A, B)[key] for _, A, B in hist], color=col, label=labels[key])
        ax.semilogy([t for t, *_ in circ], [mp_residuals(A, B)[key] for _, A, B in circ], "o", color=col, ms=4)
    ax.set_xlabel("trial (one noise sample each)")
    ax.set_ylabel("relative residual")
    ax.set_title("Recirculation → pseudoinverse pair\n(lines: matrix twin, dots: Brian2 circuit; online, η = 0.01)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "recirculation_mp_residuals.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return [p]


@register_demo("node-perturbation")
def demo_node_perturbation(out: Path, seed: int = 0) -> list[Path]:
    """Relative error ‖R − W2ᵀ‖/‖W2‖ of the NP circuit's feedback over trials, for c_h ∈ {3, 0.3, 0.03}
    (matrix twin, long run) with the Brian2 circuit overlaid for the first trials."""
    from circuits._brian import quiet_brian
    from circuits.node_perturbation import build_np_circuit, matrix_twin

    quiet_brian()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials, circuit_trials, eta = 20000, 300, 0.002
    W1, W2, R0, X, Y, xis = _np_problem(seed, trials=trials)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, c_h in enumerate((3.0, 0.3, 0.03)):
        _, hist = matrix_twin(W1, W2, R0, X, Y, xis, c_h=c_h, eta=eta, record_every=200)
        ax.plot([t for t, _ in hist], [rel_error(R, W2.T) for _, R in hist], color=f"C{i}", label=f"c_h = {c_h:g}")
        if i == 1:
            c = build_np_circuit(W1, W2, R0, X[:circuit_trials], Y[:circuit_trials], xis[:circuit_trials],
                                 c_h=c_h, eta=eta, name="npc_demo")
            pts = [(0, rel_error(R0, W2.T))]
            for _ in range(3):
                c.run(circuit_trials // 3)
                pts.append((c.trials_done, rel_error(c.feedback(), W2.T)))
            ax.plot(*zip(*pts), "o", color=f"C{i}", ms=4, label="Brian2 circuit")
    ax.set_xlabel("trial (one example, one noisy pass)")
    ax.set_ylabel("‖R − W2ᵀ‖ / ‖W2‖")
    ax.set_title(f"Node perturbation learns the feedback (Lansdell Thm 1), online η = {eta:g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "node_perturbation_feedback_error.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return [p]
