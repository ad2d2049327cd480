"""A recirculation circuit that learns a pseudoinverse pair (Cameron, Chen, Wagner & Sejnowski,
poster, file 000: "Locally learning pseudoinverse feedback connections").

Two rate populations, ``X`` (input layer, n units) and ``H`` (hidden layer, k units), joined by the
forward synapses ``A`` (X → H) and the reciprocal feedback synapses ``B`` (H → X).  Every trial
presents one sample of mean-zero noise ``x`` (given as explicit samples in a ``TimedArray``, so the
matrix twin can replay it) and runs the three recirculation phases of the poster as an explicit
schedule, one time step each::

    phase 0  "forward"        x ← noise(t),  h = A x          (poster: initial hidden representation)
    phase 1  "reconstruct"    x̂ = B h                        (input reconstruction)
    phase 2  "recirculate"    ĥ = A x̂                        (reconstructed hidden representation)
             "plasticity"     ΔA = η_A (h − ĥ) xᵀ,  ΔB = η_B [(x − x̂) hᵀ − λ B]   (at the end of phase 2)

The plasticity of each synapse uses only the activity difference of its postsynaptic unit and the
activity of its presynaptic unit: ``wA += η_A (h_post − ĥ_post) x_pre`` and
``wB += η_B (x_post − x̂_post) h_pre`` — the poster's rules, one synapse at a time.

Discretisation: the circuit is a discrete-time map (no differential equation); each phase is one
step of length ``dt``, implemented with ``run_regularly`` operations in fixed scheduling slots —
``'start'``: the presented activity is latched; ``'groups'``: Brian2's summed variables
``ff = A·xin`` and ``fb = B·hin`` (summed-variable updaters run in the ``groups`` slot); then
``'after_groups'``: the phase's result is latched; ``'end'``: plasticity.  A phase gate
``p_k = int(phase(t) == k)`` selects what each step does; gated updates are written
``v = p·new + (1 − p)·v``, exact in floating point for p ∈ {0, 1}, so the matrix twin
(:func:`matrix_twin`, built on :func:`plasticity.learned_feedback.recirculation_step`) matches to
rounding (≲1e-13 relative after hundreds of trials).

Symbol table (poster → code)
----------------------------
=========  ===========================  ===================
poster     circuit                      twin
=========  ===========================  ===================
x          ``X.x``                      ``noise[k]``
h          ``H.h``                      ``h``
x̂          ``X.xhat``                   ``xhat``
ĥ          ``H.hhat``                   ``hhat``
A (k×n)    ``SA.wA`` (X→H)              ``A``
B (n×k)    ``SB.wB`` (H→X)              ``B``
=========  ===========================  ===================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plasticity.learned_feedback import recirculation_step

from ._brian import check_dt, check_name, check_target, codegen_target, get_matrix, run_trials, set_matrix

__all__ = ["RecirculationCircuit", "build_recirculation", "make_noise", "matrix_twin", "N_PHASES",
           "X_EQS", "H_EQS", "A_SYN_EQS", "B_SYN_EQS"]

#: steps per trial: forward, reconstruct, recirculate (+ plasticity at the end of the last)
N_PHASES = 3

# --- equations (poster "Dynamics" and "Learning rules"; rates dimensionless) -----------------------

#: input layer X
X_EQS = """
x : 1      # presented noise sample (poster: x)
xin : 1    # what the A synapses read: x in phase 0, x-hat in phase 2
xhat : 1   # reconstruction x-hat = B h (poster, input reconstruction)
fb : 1     # summed feedback input B hin
"""

#: hidden layer H
H_EQS = """
h : 1      # initial hidden representation h = A x
hhat : 1   # reconstructed hidden representation h-hat = A x-hat
hin : 1    # what the B synapses read (h, latched in phase 0)
ff : 1     # summed forward input A xin
"""

#: forward synapses A (X → H): ff = A·xin
A_SYN_EQS = """
wA : 1
ff_post = wA * xin_pre : 1 (summed)
"""

#: reciprocal feedback synapses B (H → X): fb = B·hin
B_SYN_EQS = """
wB : 1
fb_post = wB * hin_pre : 1 (summed)
"""

#: 'start' slot of X: latch the noise sample (phase 0) and the activity A reads (x, then x̂)
X_START = """
x = int(phase(t) == 0) * noise(t, i) + (1 - int(phase(t) == 0)) * x
xin = int(phase(t) == 0) * x + int(phase(t) == 2) * xhat + (1 - int(phase(t) == 0) - int(phase(t) == 2)) * xin
"""

#: 'after_groups' slot of X: x̂ = B h (phase 1)
X_LATCH = """
xhat = int(phase(t) == 1) * fb + (1 - int(phase(t) == 1)) * xhat
"""

#: 'after_groups' slot of H: h = A x (phase 0), ĥ = A x̂ (phase 2)
H_LATCH = """
h = int(phase(t) == 0) * ff + (1 - int(phase(t) == 0)) * h
hin = int(phase(t) == 0) * ff + (1 - int(phase(t) == 0)) * hin
hhat = int(phase(t) == 2) * ff + (1 - int(phase(t) == 2)) * hhat
"""

#: 'end' slot, phase 2: ΔA = η_A (h − ĥ) xᵀ (poster, hidden reconstruction error)
A_PLASTICITY = """
wA += int(phase(t) == 2) * eta_A * (h_post - hhat_post) * x_pre
"""

#: 'end' slot, phase 2: ΔB = η_B [(x − x̂) hᵀ − λ B] (poster, input reconstruction error; λ optional)
B_PLASTICITY = """
wB += int(phase(t) == 2) * eta_B * ((x_post - xhat_post) * h_pre - decay * wB)
"""


def make_noise(n_trials: int, n: int, std: float = 1.0, *, seed) -> np.ndarray:
    """Mean-zero Gaussian noise samples (n_trials, n) from an explicit seed or Generator."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return std * rng.standard_normal((int(n_trials), int(n)))


@dataclass
class RecirculationCircuit:
    """Handle on the built circuit: the real Brian2 objects plus the namespace they run with."""

    net: object
    X: object
    H: object
    SA: object
    SB: object
    namespace: dict
    dt: object
    n_trials: int
    target: str = "numpy"
    trials_done: int = 0
    ops: dict = field(default_factory=dict)

    def run(self, n_trials: int | None = None) -> "RecirculationCircuit":
        """Run ``n_trials`` more trials (default: all remaining noise samples)."""
        return run_trials(self, n_trials, N_PHASES, "noise samples")

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` as dense float64 matrices, A (k, n) and B (n, k)."""
        return get_matrix(self.SA, "wA", layout="post_pre"), get_matrix(self.SB, "wB", layout="post_pre")

    def activity(self) -> dict:
        """The last trial's ``x, h, xhat, hhat`` (1-D arrays)."""
        return {"x": np.array(self.X.x[:]), "xhat": np.array(self.X.xhat[:]), "h": np.array(self.H.h[:]),
                "hhat": np.array(self.H.hhat[:])}


def build_recirculation(A0, B0, noise, *, eta_A: float = 0.01, eta_B: float = 0.01, decay: float = 0.0,
                        dt=None, target: str = "numpy", name: str = "recirc") -> RecirculationCircuit:
    """Build the circuit with initial ``A0`` (k, n), ``B0`` (n, k) and noise samples (n_trials, n).

    ``eta_A = 0`` keeps A fixed (the RF setting, where A is a forward weight that learns the task).
    Nothing runs here; call :meth:`RecirculationCircuit.run`.
    """
    import brian2 as b2

    check_target(target)
    check_name(name)
    dt = b2.ms if dt is None else check_dt(dt)
    A0, B0, noise = (np.asarray(a, dtype=np.float64) for a in (A0, B0, noise))
    k, n = A0.shape
    if B0.shape != (n, k):
        raise ValueError(f"B0 must have shape {(n, k)} (the transpose shape of A0 {A0.shape}), got {B0.shape}")
    if noise.ndim != 2 or noise.shape[1] != n:
        raise ValueError(f"noise must have shape (n_trials, {n}), got {noise.shape}")
    for nm, v in (("eta_A", eta_A), ("eta_B", eta_B), ("decay", decay)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{nm} must be a finite number ≥ 0, got {v!r}")
    n_trials = noise.shape[0]
    with codegen_target(target):  # connect() generates code
        phase = b2.TimedArray(np.tile(np.arange(N_PHASES, dtype=np.float64), n_trials), dt=dt, name=f"{name}_phase")
        noise_ta = b2.TimedArray(noise, dt=N_PHASES * dt, name=f"{name}_noise")
        namespace = {"phase": phase, "noise": noise_ta, "eta_A": float(eta_A), "eta_B": float(eta_B),
                     "decay": float(decay)}
        X = b2.NeuronGroup(n, X_EQS, method="euler", dt=dt, name=f"{name}_X", namespace=namespace)  # no ODE: a discrete map
        H = b2.NeuronGroup(k, H_EQS, method="euler", dt=dt, name=f"{name}_H", namespace=namespace)
        SA = b2.Synapses(X, H, A_SYN_EQS, dt=dt, name=f"{name}_A", namespace=namespace)
        SB = b2.Synapses(H, X, B_SYN_EQS, dt=dt, name=f"{name}_B", namespace=namespace)
        SA.connect(True)
        SB.connect(True)
        set_matrix(SA, "wA", A0, layout="post_pre")
        set_matrix(SB, "wB", B0, layout="post_pre")
        ops = {
            "x_start": X.run_regularly(X_START, when="start", order=0, name=f"{name}_x_start"),
            "h_latch": H.run_regularly(H_LATCH, when="after_groups", order=0, name=f"{name}_h_latch"),
            "x_latch": X.run_regularly(X_LATCH, when="after_groups", order=1, name=f"{name}_x_latch"),
            "a_plast": SA.run_regularly(A_PLASTICITY, when="end", order=0, name=f"{name}_a_plast"),
            "b_plast": SB.run_regularly(B_PLASTICITY, when="end", order=1, name=f"{name}_b_plast"),
        }
        net = b2.Network(X, H, SA, SB, *ops.values(), name=f"{name}_net")
        return RecirculationCircuit(net, X, H, SA, SB, namespace, dt, n_trials, target, 0, ops)


def matrix_twin(A0, B0, noise, *, eta_A: float = 0.01, eta_B: float = 0.01, decay: float = 0.0,
                record_every: int = 0):
    """The same trials as matrix updates (float64): one :func:`recirculation_step` per noise sample.

    Returns ``(A, B, history)``; ``history`` holds ``(trial, A, B)`` every ``record_every`` trials.
    """
    A, B = np.array(A0, dtype=np.float64), np.array(B0, dtype=np.float64)
    hist = [(0, A.copy(), B.copy())] if record_every else []
    for t, x in enumerate(np.asarray(noise, dtype=np.float64), start=1):
        A, B = recirculation_step(A, B, x[None, :], eta_A, eta_B, decay)
        if record_every and t % record_every == 0:
            hist.append((t, A.copy(), B.copy()))
    return A, B, hist
