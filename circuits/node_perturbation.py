"""Node-perturbation pieces as a Brian2 rate circuit (Lansdell, Prakash & Kording 2019, file 004):
noisy hidden units driven by given noise samples, a loss unit, and feedback synapses ``R`` that learn
from the perturbation estimate ``λ̂ = (L̃ − L) ξ / c_h`` by the least-squares (delta) rule.

Network: input ``X`` (n_in) → hidden ``H`` (n_h, transfer g = linear or tanh) → output ``Y`` (n_out,
linear), squared-error loss ``L = ½‖y − y*‖²``; forward weights ``W1`` (X→H) and ``W2`` (H→Y) are
fixed.  The feedback synapses ``SR`` (Y → H) carry ``fb = R δ`` with ``δ = y* − y = −∂L/∂a_out`` (our
teaching-signal sign) and learn so that ``R δ ≈ −λ̂ ≈ −∂L/∂h``; for this loss ``R → W2ᵀ`` (Theorem 1).
A single loss unit ``Lu`` sums the squared errors of the clean and of the noisy pass and broadcasts
``L̃ − L`` back to every hidden unit — the global scalar "reward" of perturbation learning.

Schedule (one time step each, a trial per example; the example, its target and the noise sample are
``TimedArray`` rows)::

    phase 0  clean forward      a = W1 x,  h = g(a),  hin = h
    phase 1  clean output       y = W2 hin → yc,  δ = y* − yc;  then hin = h + c_h ξ  (Lansdell §2)
    phase 2  noisy output       y = W2 hin → yn
    phase 3  loss unit          Lc = ½Σ(yc − y*)²,  Ln = ½Σ(yn − y*)²
    phase 4  estimate, learn    dL = Ln − Lc (broadcast);  t = −dL ξ / c_h  (= −λ̂);  fb = R δ
                                r_jk += η (t_j − fb_j) δ_k                    (Suppl. eq. 4, one SGD step)

Each latch is written ``v = p·new + (1 − p)·v`` with a phase gate ``p = int(phase(t) == k)``,
exact for p ∈ {0, 1}; summed variables are evaluated in the ``groups`` slot, latches in
``after_groups``, plasticity in ``end``.  The matrix twin :func:`matrix_twin` performs the same
arithmetic with :func:`plasticity.learned_feedback.np_target` and :func:`~plasticity.learned_feedback.ls_step`.

Symbol table (Lansdell → code)
------------------------------
==============  ======================  ===========================
paper           circuit                 twin
==============  ======================  ===========================
h^N             ``H.h``                 ``h``
c_h ξ^N         ``c_h * xi(t, i)``      ``c_h * xis[k]``
L, L̃            ``Lu.Lc``, ``Lu.Ln``    ``Lc``, ``Ln``
λ̂^N             ``−H.tgt``              ``−np_target(...)``
e^{N+1}         ``−Y.delta``            ``−δ``
(B^{N+1})ᵀ      ``SR.r`` (= R)          ``R`` (n_h, n_out)
==============  ======================  ===========================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plasticity.learned_feedback import ls_step, np_target

from ._brian import check_dt, check_name, check_target, codegen_target, get_matrix, run_trials, set_matrix

__all__ = ["NPCircuit", "build_np_circuit", "matrix_twin", "N_PHASES", "TRANSFER_EXPR",
           "X_EQS", "H_EQS", "Y_EQS", "LOSS_EQS", "W1_SYN_EQS", "W2_SYN_EQS", "R_SYN_EQS", "YL_SYN_EQS",
           "LH_SYN_EQS"]

N_PHASES = 5

#: hidden transfer g(a) as a Brian2 expression
TRANSFER_EXPR = {"linear": "a", "tanh": "tanh(a)"}

X_EQS = """
x : 1            # presented input
"""

H_EQS = """
a : 1            # summed input W1 x (pre-activation)
h : 1            # clean response g(a)                       (Lansdell §2, noise-free)
hin : 1          # response the W2 synapses read: h, then h + c_h xi  (§2 noisy response)
fb : 1           # synthetic gradient R delta (summed, our sign: -dL/dh)
dL : 1           # broadcast loss difference L-tilde - L
tgt : 1          # regression target -lambda-hat = -(L-tilde - L) xi / c_h   (Suppl. eq. 3)
"""

Y_EQS = """
ysum : 1         # summed input W2 hin (linear output)
yc : 1           # clean output
yn : 1           # noisy output
ystar : 1        # target
delta : 1        # teaching signal y* - y = -dL/da_out
"""

LOSS_EQS = """
Lc_in : 1        # summed clean squared error
Ln_in : 1        # summed noisy squared error
Lc : 1           # L (latched)
Ln : 1           # L-tilde (latched)
"""

W1_SYN_EQS = """
w : 1
a_post = w * x_pre : 1 (summed)
"""

W2_SYN_EQS = """
w : 1
ysum_post = w * hin_pre : 1 (summed)
"""

#: feedback synapses Y → H: fb = R δ (R = (B^{N+1})ᵀ)
R_SYN_EQS = """
r : 1
fb_post = r * delta_pre : 1 (summed)
"""

#: output → loss unit: L = ½ Σ (y − y*)² for the clean and the noisy pass
YL_SYN_EQS = """
Lc_in_post = 0.5 * (yc_pre - ystar_pre)**2 : 1 (summed)
Ln_in_post = 0.5 * (yn_pre - ystar_pre)**2 : 1 (summed)
"""

#: loss unit → hidden units: the broadcast L̃ − L
LH_SYN_EQS = """
dL_post = Ln_pre - Lc_pre : 1 (summed)
"""

X_START = """
x = inp(t, i)
"""

Y_START = """
ystar = target(t, i)
"""

H_LATCH = """
h = int(phase(t) == 0) * ({g}) + (1 - int(phase(t) == 0)) * h
hin = int(phase(t) == 0) * h + int(phase(t) == 1) * (h + c_h * xi(t, i)) + (1 - int(phase(t) == 0) - int(phase(t) == 1)) * hin
tgt = int(phase(t) == 4) * (-(dL * xi(t, i) / c_h)) + (1 - int(phase(t) == 4)) * tgt
"""

Y_LATCH = """
yc = int(phase(t) == 1) * ysum + (1 - int(phase(t) == 1)) * yc
delta = int(phase(t) == 1) * (ystar - ysum) + (1 - int(phase(t) == 1)) * delta
yn = int(phase(t) == 2) * ysum + (1 - int(phase(t) == 2)) * yn
"""

LOSS_LATCH = """
Lc = int(phase(t) == 3) * Lc_in + (1 - int(phase(t) == 3)) * Lc
Ln = int(phase(t) == 3) * Ln_in + (1 - int(phase(t) == 3)) * Ln
"""

#: least-squares SGD on R (Suppl. eq. 4): ΔR = η (t − R δ) δᵀ, synapse by synapse
R_PLASTICITY = """
r += int(phase(t) == 4) * eta * (tgt_post - fb_post) * delta_pre
"""


@dataclass
class NPCircuit:
    """Handle on the node-perturbation circuit (real Brian2 objects and their namespace)."""

    net: object
    X: object
    H: object
    Y: object
    Lu: object
    synapses: dict
    namespace: dict
    dt: object
    n_trials: int
    target: str = "numpy"
    trials_done: int = 0
    ops: dict = field(default_factory=dict)

    def run(self, n_trials: int | None = None) -> "NPCircuit":
        return run_trials(self, n_trials, N_PHASES, "examples")

    def feedback(self) -> np.ndarray:
        """R (n_h, n_out) as float64: ``get_matrix`` in (post=H, pre=Y) layout."""
        return get_matrix(self.synapses["R"], "r", layout="post_pre")

    def last_trial(self) -> dict:
        return {"Lc": float(self.Lu.Lc[0]), "Ln": float(self.Lu.Ln[0]), "h": np.array(self.H.h[:]),
                "tgt": np.array(self.H.tgt[:]), "fb": np.array(self.H.fb[:]), "delta": np.array(self.Y.delta[:])}


def build_np_circuit(W1, W2, R0, inputs, targets, xis, *, c_h: float, eta: float, transfer: str = "tanh",
                     dt=None, target: str = "numpy", name: str = "npc") -> NPCircuit:
    """Build the circuit: ``W1`` (n_h, n_in), ``W2`` (n_out, n_h) fixed, ``R0`` (n_h, n_out) plastic;
    ``inputs`` (T, n_in), ``targets`` (T, n_out), ``xis`` (T, n_h) standard-normal noise samples."""
    import brian2 as b2

    check_target(target)
    check_name(name)
    dt = b2.ms if dt is None else check_dt(dt)
    W1, W2, R0, inputs, targets, xis = (np.asarray(a, dtype=np.float64) for a in (W1, W2, R0, inputs, targets, xis))
    n_h, n_in = W1.shape
    n_out = W2.shape[0]
    if W2.shape != (n_out, n_h) or R0.shape != (n_h, n_out):
        raise ValueError(f"W2 must be (n_out, {n_h}) and R0 ({n_h}, n_out); got {W2.shape}, {R0.shape}")
    T = inputs.shape[0]
    if inputs.shape != (T, n_in) or targets.shape != (T, n_out) or xis.shape != (T, n_h):
        raise ValueError(f"inputs/targets/xis must be ({T}, {n_in}), ({T}, {n_out}), ({T}, {n_h}); "
                         f"got {inputs.shape}, {targets.shape}, {xis.shape}")
    if not c_h > 0:
        raise ValueError(f"c_h must be > 0, got {c_h!r}")
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    if transfer not in TRANSFER_EXPR:
        raise ValueError(f"transfer must be one of {', '.join(TRANSFER_EXPR)}, got {transfer!r}")
    with codegen_target(target):  # connect() generates code
        tdt = N_PHASES * dt
        ns = {
            "phase": b2.TimedArray(np.tile(np.arange(N_PHASES, dtype=np.float64), T), dt=dt, name=f"{name}_phase"),
            "inp": b2.TimedArray(inputs, dt=tdt, name=f"{name}_inp"),
            "target": b2.TimedArray(targets, dt=tdt, name=f"{name}_target"),
            "xi": b2.TimedArray(xis, dt=tdt, name=f"{name}_xi"),
            "c_h": float(c_h),
            "eta": float(eta),
        }
        X = b2.NeuronGroup(n_in, X_EQS, method="euler", dt=dt, name=f"{name}_X", namespace=ns)  # discrete maps, no ODE
        H = b2.NeuronGroup(n_h, H_EQS, method="euler", dt=dt, name=f"{name}_H", namespace=ns)
        Y = b2.NeuronGroup(n_out, Y_EQS, method="euler", dt=dt, name=f"{name}_Y", namespace=ns)
        Lu = b2.NeuronGroup(1, LOSS_EQS, method="euler", dt=dt, name=f"{name}_L", namespace=ns)
        S1 = b2.Synapses(X, H, W1_SYN_EQS, dt=dt, name=f"{name}_W1", namespace=ns)
        S2 = b2.Synapses(H, Y, W2_SYN_EQS, dt=dt, name=f"{name}_W2", namespace=ns)
        SR = b2.Synapses(Y, H, R_SYN_EQS, dt=dt, name=f"{name}_R", namespace=ns)
        SYL = b2.Synapses(Y, Lu, YL_SYN_EQS, dt=dt, name=f"{name}_YL", namespace=ns)
        SLH = b2.Synapses(Lu, H, LH_SYN_EQS, dt=dt, name=f"{name}_LH", namespace=ns)
        for S in (S1, S2, SR, SYL, SLH):
            S.connect(True)
        set_matrix(S1, "w", W1, layout="post_pre")
        set_matrix(S2, "w", W2, layout="post_pre")
        set_matrix(SR, "r", R0, layout="post_pre")  # R (n_h, n_out) = (post H, pre Y)
        ops = {
            "x_start": X.run_regularly(X_START, when="start", order=0, name=f"{name}_x_start"),
            "y_start": Y.run_regularly(Y_START, when="start", order=1, name=f"{name}_y_start"),
            "h_latch": H.run_regularly(H_LATCH.format(g=TRANSFER_EXPR[transfer]), when="after_groups", order=0,
                                       name=f"{name}_h_latch"),
            "y_latch": Y.run_regularly(Y_LATCH, when="after_groups", order=1, name=f"{name}_y_latch"),
            "l_latch": Lu.run_regularly(LOSS_LATCH, when="after_groups", order=2, name=f"{name}_l_latch"),
            "r_plast": SR.run_regularly(R_PLASTICITY, when="end", order=0, name=f"{name}_r_plast"),
        }
        syn = {"W1": S1, "W2": S2, "R": SR, "YL": SYL, "LH": SLH}
        net = b2.Network(X, H, Y, Lu, *syn.values(), *ops.values(), name=f"{name}_net")
        return NPCircuit(net, X, H, Y, Lu, syn, ns, dt, T, target, 0, ops)


def matrix_twin(W1, W2, R0, inputs, targets, xis, *, c_h: float, eta: float, transfer: str = "tanh",
                record_every: int = 0):
    """The same online run as matrix operations (float64).  Returns ``(R, history)`` with
    ``(trial, R)`` every ``record_every`` trials."""
    g = np.tanh if transfer == "tanh" else (lambda a: a)
    W1, W2 = np.asarray(W1, dtype=np.float64), np.asarray(W2, dtype=np.float64)
    R = np.array(R0, dtype=np.float64)
    hist = [(0, R.copy())] if record_every else []
    for k in range(len(inputs)):
        h = g(W1 @ inputs[k])
        yc = W2 @ h
        delta = targets[k] - yc
        yn = W2 @ (h + c_h * xis[k])
        Lc = 0.5 * np.sum((yc - targets[k]) ** 2)
        Ln = 0.5 * np.sum((yn - targets[k]) ** 2)
        t = np_target(np.array([Ln]), np.array([Lc]), xis[k][None, :], c_h)
        R = ls_step(R, delta[None, :], t, eta)
        if record_every and (k + 1) % record_every == 0:
            hist.append((k + 1, R.copy()))
    return R, hist
