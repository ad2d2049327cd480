"""Dynamic inversion (DI) in the torch engine (Podlaski & Machens 2020, §4, §7.3, §7.5.1).

DI is not layer-local in the way autograd sees a network: for nonlinear g it must run on each
example's own δ at its true scale and in the paper's sign (:mod:`plasticity.inversion`), the g
of each hidden layer enters the dynamics, and the single-loop chain spans the whole network.
So a DI network carries a :class:`DIEngine` (:mod:`bridge.engines`), and in every backward pass:

* when the output layer's backward starts (``grad = −δ_L/n``, a batch-mean loss), the engine
  monitors the largest real eigenvalue of S9 for every layer (or of the single loop's Jacobian),
  runs SSA on B whenever it turns ≥ 0 (§7.5.1) — raising
  :class:`~plasticity.inversion.StabilityError` if that fails, never diverging silently — then
  recomputes the forward pass and runs the batched DI dynamics of the rule (Euler with the
  convergence stop, or the steady-state solver; any chain) via
  :meth:`plasticity.inversion.DI.reference_signals`;
* each layer then sends down ``−δ_{l−1}/n`` of that solution, so autograd's own products give
  ``W.grad = −⟨δ hᵀ⟩`` and ``b.grad = −⟨δ⟩`` (eq. 2: "biases … are updated with the converged
  error signals").  The output layer's gradients are autograd's (the same for every rule).

The feedback is initialised when the network is built (Tr-Init ``B = −W(0)ᵀ``, or R-Init stabilised
by SSA; for the single loop, SSA on the loop).  The engine's record — ``step``, ``stability`` rows
``{"step", "max_eig": [per layer]}`` measured before that step's DI (plus ``"max_eig_after"`` when
SSA acted) and ``events`` (stabilisations) — is part of ``state_dict``; the stabilised B is the
layers' ``feedback`` buffer.  ``model.di_state`` is the engine.
"""

from __future__ import annotations

import dataclasses

import torch

from plasticity import BP, NDI, PBP, forward, output_signal, teaching_signals
from plasticity.inversion import (
    DI,
    StabilityError,
    loop_feedback,
    loop_matrix,
    spectral_abscissa,
    stability,
    stabilize,
    stabilize_loop,
)

from .engines import Engine, network_forward, register_engine
from .metrics import angle_deg

__all__ = ["DIEngine", "prepare", "di_signals", "di_stability", "effective_max_eig", "di_angles", "StabilityError"]


def _rule(model) -> DI:
    if not isinstance(model.rule, DI):
        raise TypeError(f"model trains with rule {model.rule.name!r}, not 'di'")
    return model.rule


def _set_feedback(lin, B):
    with torch.no_grad():
        lin.feedback.copy_(torch.as_tensor(B, dtype=lin.feedback.dtype, device=lin.feedback.device))


@register_engine(DI)
class DIEngine(Engine):
    """The DI controller of a :class:`~bridge.network.FeedbackMLP` (see the module docstring)."""

    def __init__(self, rule, context):
        super().__init__(rule, context)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.monitor_every = 1
        self.stability: list = []
        self.events: list = []
        self._initialised = False

    @property
    def step(self) -> int:
        return int(self.steps)

    @property
    def model(self):
        return self.context.network

    def get_extra_state(self):
        return {"monitor_every": self.monitor_every, "stability": list(self.stability), "events": list(self.events)}

    def set_extra_state(self, state):
        self.monitor_every = int(state["monitor_every"])
        self.stability = list(state["stability"])
        self.events = list(state["events"])
        self._initialised = True

    def initialise(self):
        """Single loop: SSA on the loop's B once, from the initial weights (per-layer Tr-/R-Init is
        done by the layers themselves)."""
        if not self._initialised:
            if self.rule.chain == "single-loop" and len(self.layers) > 2:
                _stabilise_loop(self.model, reason="init", only_if_unstable=True)
            self._initialised = True

    @torch.no_grad()
    def output_backward(self, rec, grad):
        model, rule = self.model, self.rule
        self.initialise()
        if not rec.capture and len(self.layers) > 1 and self.step % max(self.monitor_every, 1) == 0:
            eig = di_stability(model)
            row = {"step": self.step, "max_eig": eig}
            self.stability.append(row)
            if rule.stabilize and max(eig) >= 0:
                if rule.chain == "single-loop" and len(self.layers) > 2:
                    _stabilise_loop(model, reason="training")
                else:
                    for l, lam in enumerate(eig, start=1):
                        if lam >= 0:
                            _stabilise_layer(model, l, reason="training")
                row["max_eig_after"] = di_stability(model)
        n = grad.shape[0]
        x0 = rec.inputs[0][0].detach()
        fwd = network_forward(self.layers, model.transfers, x0.reshape(-1, x0.shape[-1]))
        Rs = [None if lin.feedback is None else lin.feedback.detach() for lin in self.layers]
        Ws = [lin.weight.detach() for lin in self.layers]
        rec.data["di"] = rule.reference_signals(Ws, Rs, fwd, -n * grad, model.transfers)
        if not rec.capture:
            self.steps += 1

    def propagate(self, rec, l, grad):
        if l == 0:
            return None
        return rec.data["di"][l - 1].to(grad.dtype) * (-1.0 / grad.shape[0])


@torch.no_grad()
def prepare(model, *, monitor_every: int = 1) -> DIEngine:
    """Set how often the engine checks S9 (every ``monitor_every`` steps) and run the single loop's
    initial SSA now; returns the engine (``model.di_state``).  Optional: the network initialises
    itself on its first backward pass."""
    _rule(model)
    eng = model.di_state
    if int(monitor_every) != monitor_every or monitor_every < 1:
        raise ValueError(f"monitor_every must be a positive integer, got {monitor_every!r}")
    eng.monitor_every = int(monitor_every)
    eng.initialise()
    return eng


def _stabilise_layer(model, l, *, reason):
    rule, st = model.rule, model.di_state
    lin = model.linears[l]
    W, R = lin.weight.detach(), lin.feedback.detach()
    lam = stability(W, R, rule.alpha, architecture=rule.architecture)
    if lam < 0:
        return
    Bn, info = stabilize(W, R, rule.alpha, architecture=rule.architecture)
    _set_feedback(lin, Bn)
    st.events.append({"step": st.step, "layer": l + 1, "reason": reason, **info})


def _stabilise_loop(model, *, reason, only_if_unstable=True):
    """SSA on the single loop's B = −(−R_2)⋯(−R_L); the new B is written back through R_2."""
    rule, st = model.rule, model.di_state
    Ws = [w.detach() for w in model.weights()]
    Rs = [None if r is None else r.detach() for r in model.feedbacks()]
    B = loop_feedback(Rs)
    lam = spectral_abscissa(loop_matrix(Ws[1:], B, rule.alpha))
    if only_if_unstable and lam < 0:
        return
    Bn, info = stabilize_loop(Ws[1:], B, rule.alpha)
    # B = R_2 P with P = (−R_3)⋯(−R_L); pick the R_2 change of least norm: ΔR_2 = ΔB P⁺
    P = None
    for R in Rs[2:]:
        P = -R if P is None else P @ (-R)
    Bn = torch.as_tensor(Bn, dtype=torch.float64)
    Bd = B.double()
    dR = (Bn - Bd) if P is None else (Bn - Bd) @ torch.linalg.pinv(P.double())
    _set_feedback(model.linears[1], Rs[1].double() + dR)
    lam_after = spectral_abscissa(loop_matrix(Ws[1:], loop_feedback([None if r is None else r.detach()
                                                                     for r in model.feedbacks()]), rule.alpha))
    st.events.append({"step": st.step, "layer": "loop", "reason": reason, **info, "lambda_written": lam_after})
    if lam_after >= 0:
        raise StabilityError(f"single-loop B could not be written back through R_2 stably "
                             f"(largest eigenvalue {lam_after:.4g})")


def effective_max_eig(row: dict) -> float:
    """The largest S9 eigenvalue the DI computation of a ``stability`` row actually ran with."""
    return max(row.get("max_eig_after", row["max_eig"]))


@torch.no_grad()
def di_stability(model) -> list[float]:
    """Largest real eigenvalue of S9 for layers 2…L (one number for the single loop)."""
    rule = _rule(model)
    Ws = [w.detach() for w in model.weights()]
    Rs = [r.detach() if r is not None else None for r in model.feedbacks()]
    if rule.chain == "single-loop" and len(Ws) > 2:
        return [spectral_abscissa(loop_matrix(Ws[1:], loop_feedback(Rs), rule.alpha))]
    return [stability(W, R, rule.alpha, architecture=rule.architecture) for W, R in zip(Ws[1:], Rs[1:])]


def _forward(model, x):
    Ws = [w.detach() for w in model.weights()]
    bs = [None if b is None else b.detach() for b in model.biases()]
    Rs = [None if r is None else r.detach() for r in model.feedbacks()]
    return Ws, bs, Rs, forward(Ws, bs, x, model.transfers)


@torch.no_grad()
def di_signals(model, x, target, loss):
    """The DI teaching signals ``[δ_1, …, δ_L]`` (package sign) and the forward pass for a batch."""
    Ws, bs, Rs, fwd = _forward(model, x)
    lossfn = getattr(loss, "loss", loss)
    dL = output_signal(lossfn, fwd, target, model.transfers[-1])
    return model.rule.reference_signals(Ws, Rs, fwd, dL, model.transfers), fwd


@torch.no_grad()
def di_angles(model, x, target, loss) -> dict:
    """Angles (degrees) between DI's hidden teaching signals and NDI's, PBP's and BP's on a batch
    (flattened over the batch, per hidden layer), float64 — Podlaski Fig. 3d, f, i.

    Also ``angle_ndi_ungated_deg``: to the linear-g DI fixed point (eq. 10's operator with no
    g'(a) gate, the same chain and cap; ``around`` is set to ``"zero"`` explicitly — with
    ``transfer="linear"`` the gated and activity variants reduce to it anyway, as g' = 1).  DI's
    eq. 14 evaluates g at δ, not at the forward activity, so for small errors DI tends to this, not
    to NDI (which is gated, §4.2): the two angles split DI–NDI differences into the missing gate and
    the nonlinear inversion.
    """
    Ws = [w.detach().double() for w in model.weights()]
    bs = [None if b is None else b.detach().double() for b in model.biases()]
    Rs = [None if r is None else r.detach().double() for r in model.feedbacks()]
    fwd = forward(Ws, bs, x.double(), model.transfers)
    lossfn = getattr(loss, "loss", loss)
    tgt = target if target.dtype in (torch.int64, torch.int32) else target.double()
    dL = output_signal(lossfn, fwd, tgt, model.transfers[-1])
    di = model.rule.reference_signals(Ws, Rs, fwd, dL, model.transfers)
    out = {}
    cap = model.rule.max_norm  # the same §7.5.1 cap on every inversion compared (BP has none)
    for name, ref in (("ndi", NDI(alpha=model.rule.alpha, max_norm=cap)), ("pbp", PBP(max_norm=cap)), ("bp", BP())):
        sig = teaching_signals(ref, Ws, Rs, fwd, dL, model.transfers)
        out[f"angle_{name}_deg"] = [angle_deg(a, b) for a, b in zip(di[:-1], sig[:-1])]
    # eq. 10's operator without NDI's g'(a) gate, through the same chain: what DI tends to for small δ
    lin = dataclasses.replace(model.rule, transfer="linear", method="steady", around="zero")
    sig = lin.reference_signals(Ws, Rs, fwd, dL, model.transfers)
    out["angle_ndi_ungated_deg"] = [angle_deg(a, b) for a, b in zip(di[:-1], sig[:-1])]
    return out
