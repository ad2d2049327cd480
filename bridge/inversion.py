"""Dynamic inversion (DI) in the torch engine (Podlaski & Machens 2020, §4, §7.3, §7.5.1).

DI is not layer-local in the way autograd sees a network: for nonlinear g it must run on each
example's own δ at its true scale and in the paper's sign (:mod:`plasticity.inversion`), the g
of each hidden layer enters the dynamics, and the single-loop chain spans the whole network.
So the engine works in two parts:

* :class:`~bridge.layers.FeedbackLinear`'s backward calls ``DI.propagate`` on autograd's
  ``grad = −δ/n`` — a cheap linear-g solve (eq. 10) that only keeps autograd's chain going.
* The after-backward hook registered here for ``"di"`` (run by :func:`bridge.train.train`
  between ``backward`` and ``optimizer.step``) recomputes the forward pass, runs the batched DI
  dynamics of the rule (Euler with the convergence stop, or the steady-state solver; any chain)
  via :meth:`plasticity.inversion.DI.reference_signals`, and **sets** the hidden layers'
  ``W.grad = −⟨δ hᵀ⟩`` and ``b.grad = −⟨δ⟩`` (eq. 2: "biases … are updated with the converged error
  signals").  The output layer's gradients are autograd's (the same for every rule).

It also initialises the feedback (Tr-Init ``B = −W(0)ᵀ``, or R-Init stabilised by SSA), monitors
the largest real eigenvalue of S9 for every layer (or of the single loop's Jacobian), and runs SSA
on B whenever it turns ≥ 0 (§7.5.1) — raising :class:`~plasticity.inversion.StabilityError` if that
fails, never diverging silently.  The record is ``model.di_state`` (:class:`DIState`):
``stability`` rows ``{"step", "max_eig": [per layer]}`` — measured before this step's DI, plus
``"max_eig_after"`` when SSA acted on it — and ``events`` (stabilisations).

Use outside :func:`bridge.train.train`: ``prepare(model)`` once, then after each
``loss.backward()`` call ``apply_di(model, x, target, loss)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

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

from .metrics import angle_deg
from .train import register_after_backward

__all__ = ["DIState", "prepare", "apply_di", "di_signals", "di_stability", "effective_max_eig", "di_angles",
           "StabilityError"]


@dataclass
class DIState:
    """What the DI engine records on ``model.di_state``."""

    initialised: bool = False
    step: int = 0
    monitor_every: int = 1
    stability: list = field(default_factory=list)
    events: list = field(default_factory=list)


def _rule(model) -> DI:
    if not isinstance(model.rule, DI):
        raise TypeError(f"model trains with rule {model.rule.name!r}, not 'di'")
    return model.rule


def _state(model) -> DIState:
    st = getattr(model, "di_state", None)
    if st is None:
        st = DIState()
        model.di_state = st
    return st


def _set_feedback(lin, B):
    with torch.no_grad():
        lin.feedback.copy_(torch.as_tensor(B, dtype=lin.feedback.dtype, device=lin.feedback.device))


@torch.no_grad()
def prepare(model, *, monitor_every: int = 1) -> DIState:
    """Initialise the feedback of a DI model from its current (initial) weights; idempotent.

    ``init='tr'``: ``R_l = −W_lᵀ`` (layers 2…L).  ``init='random'``: keep the drawn R_l and run SSA
    (:func:`~plasticity.inversion.stabilize`) on those whose S9 has an eigenvalue ≥ 0; for the single
    loop, SSA on the loop's B through R_2.
    """
    rule, st = _rule(model), _state(model)
    st.monitor_every = int(monitor_every)
    if st.initialised:
        return st
    lins = list(model.linears)
    for l in range(1, len(lins)):
        W, lin = lins[l].weight, lins[l]
        if rule.init == "tr":
            _set_feedback(lin, -W.T)
        elif rule.chain != "single-loop":
            _stabilise_layer(model, l, reason="R-Init")
    if rule.chain == "single-loop" and len(lins) > 2:
        _stabilise_loop(model, reason="init", only_if_unstable=True)
    st.initialised = True
    return st


def _stabilise_layer(model, l, *, reason):
    rule, st = model.rule, _state(model)
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
    rule, st = model.rule, _state(model)
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
def apply_di(model, x, target, loss) -> None:
    """Initialise if needed, monitor/stabilise, and set the hidden layers' gradients to DI's."""
    rule, st = _rule(model), prepare(model)
    if len(model.linears) > 1:
        if st.step % max(st.monitor_every, 1) == 0:
            eig = di_stability(model)
            row = {"step": st.step, "max_eig": eig}
            st.stability.append(row)
            if rule.stabilize and max(eig) >= 0:
                if rule.chain == "single-loop" and len(model.linears) > 2:
                    _stabilise_loop(model, reason="training")
                else:
                    for l, lam in enumerate(eig, start=1):
                        if lam >= 0:
                            _stabilise_layer(model, l, reason="training")
                row["max_eig_after"] = di_stability(model)
        deltas, fwd = di_signals(model, x, target, loss)
        n = x.shape[0]
        for l, lin in enumerate(list(model.linears)[:-1]):
            d, h = deltas[l].to(lin.weight.dtype), fwd.hs[l].to(lin.weight.dtype)
            gW = -(d.T @ h) / n
            if lin.weight_mask is not None:
                gW = gW * lin.weight_mask
            lin.weight.grad = gW
            if lin.bias is not None:
                lin.bias.grad = -d.sum(0) / n
    st.step += 1


@register_after_backward("di")
def _after_backward(model, x, target, loss):
    apply_di(model, x, target, loss)


@torch.no_grad()
def di_angles(model, x, target, loss) -> dict:
    """Angles (degrees) between DI's hidden teaching signals and NDI's, PBP's and BP's on a batch
    (flattened over the batch, per hidden layer), float64 — Podlaski Fig. 3d, f, i.

    Also ``angle_ndi_ungated_deg``: to the linear-g DI fixed point (eq. 10's operator with no
    g'(a) gate, the same chain and cap).  DI's eq. 14 evaluates g at δ, not at the forward
    activity, so for small errors DI tends to this, not to NDI (which is gated, §4.2): the two
    angles split DI–NDI differences into the missing gate and the nonlinear inversion.
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
    lin = dataclasses.replace(model.rule, transfer="linear", method="steady")
    sig = lin.reference_signals(Ws, Rs, fwd, dL, model.transfers)
    out["angle_ndi_ungated_deg"] = [angle_deg(a, b) for a, b in zip(di[:-1], sig[:-1])]
    return out
