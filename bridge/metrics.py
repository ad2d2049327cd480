"""Per-layer diagnostics: update angles to BP and PBP, W–R alignment, sign congruence, NSE.

* ``angle_bp_deg[l]``: angle between the rule's teaching signal δ_l and backprop's on the same
  batch, both flattened over the batch (Lillicrap Fig. 1e, ``Δh_FA ∠ Δh_BP``), hidden layers only.
* ``angle_pbp_deg[l]``: the same against pseudobackprop (Lillicrap Fig. 4c).
* ``alignment_deg[l]``: angle between ``R_l`` and ``W_lᵀ`` (flattened); ``sign_congruence[l]``:
  fraction of entries where ``sign R_l = sign W_lᵀ``; ``rel_dist[l] = ‖R_l − W_lᵀ‖/‖W_lᵀ‖``
  (Lansdell Fig. 1), for layers 2…L whose feedback has W's transposed shape.
* ``nse``: normalised squared error ``Σ‖y* − y‖² / Σ‖y*‖²`` (Lillicrap Fig. 1d; 1 for y ≡ 0).
"""

from __future__ import annotations

import math

import torch

from plasticity import BP, PBP


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two arrays viewed as vectors, in degrees (nan if either is zero)."""
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return math.nan
    a, b = a / na, b / nb  # 2·atan2(‖â − b̂‖, ‖â + b̂‖): accurate near 0° and 180°, unlike acos
    return math.degrees(2.0 * math.atan2(float((a - b).norm()), float((a + b).norm())))


def teaching_signals_of(model, x, target, loss, rule=None) -> list[torch.Tensor]:
    """The teaching signals ``δ_l = −∂L/∂a_l`` that ``model``'s layers receive on one batch, in
    forward order (output layer included), from the network's own backward pass in capture mode
    (nothing learns, no random numbers are drawn).  ``rule``: the rule to measure instead of the
    model's own (e.g. ``BP()``); then the derivative gates of :class:`Activation` modules are on,
    as that rule's backward needs, and the model's engine is not used.  Works on any
    :class:`FeedbackMLP` or converted model."""
    from .layers import Activation
    from .losses import TeachingLoss
    from .network import feedback_layers

    layers = feedback_layers(model)
    ctx = layers[0].context
    crit = loss if isinstance(loss, TeachingLoss) else TeachingLoss(loss)
    saved = [(lin, lin.rule) for lin in layers]
    acts = [(m, m.gated) for m in model.modules() if isinstance(m, Activation)]
    engine = ctx.engine
    try:
        ctx.capture = True
        if rule is not None:
            ctx.engine = None
            for lin in layers:
                lin.rule = rule
            for m, _ in acts:
                m.gated = True
        with torch.enable_grad():
            out = model(x)
            L = crit(out, target)
            rec = out._credit_pass if hasattr(out, "_credit_pass") else ctx.current
            torch.autograd.grad(L, [lin.weight for lin in layers], allow_unused=True)
    finally:
        ctx.capture = False
        ctx.engine = engine
        for lin, r in saved:
            lin.rule = r
        for m, g in acts:
            m.gated = g
    n = rec.captured[len(layers) - 1].shape[0]
    return [-n * rec.captured[i] if i in rec.captured else None for i in range(len(layers))]


@torch.no_grad()
def signal_angles(model, x, target, loss) -> dict:
    """Angles of the model's hidden teaching signals to BP's and PBP's on one batch (every layer but
    the output), on any :class:`FeedbackMLP` or converted model."""
    own = teaching_signals_of(model, x, target, loss)
    out = {}
    for ref_name, ref in (("bp", BP()), ("pbp", PBP())):
        try:
            sig = teaching_signals_of(model, x, target, loss, rule=ref)
        except ValueError:  # no convolutional form of pseudobackprop: the angle is not defined
            continue
        out[f"angle_{ref_name}_deg"] = [angle_deg(r, s) for r, s in zip(own[:-1], sig[:-1])
                                        if r is not None and s is not None]
    return out


@torch.no_grad()
def feedback_alignment(model) -> dict:
    """W–R alignment statistics per layer with a transposed-shape feedback (all but the first layer),
    on any :class:`FeedbackMLP` or converted model."""
    from .network import feedback_layers

    out = {"alignment_deg": [], "sign_congruence": [], "rel_dist": []}
    for l, lin in enumerate(feedback_layers(model)):
        W, R = lin.weight, lin.feedback
        if l == 0 or R is None:
            continue
        if W.ndim == 2 and tuple(R.shape) == tuple(W.T.shape):
            Wt = W.detach().T.double()  # linear: R_l against W_lᵀ
        elif W.ndim > 2 and tuple(R.shape) == tuple(W.shape):
            Wt = W.detach().double()  # convolutional: the kernel R against W (both act transposed)
        else:
            continue
        R = R.detach().double()
        out["alignment_deg"].append(angle_deg(R, Wt))
        out["sign_congruence"].append(float((torch.sign(R) == torch.sign(Wt)).double().mean()))
        out["rel_dist"].append(float((R - Wt).norm() / Wt.norm()))
    return {k: v for k, v in out.items() if v}


def nse(y: torch.Tensor, target: torch.Tensor) -> float:
    """Normalised squared error ``Σ‖y* − y‖² / Σ‖y*‖²``."""
    return float(((target - y) ** 2).sum() / (target**2).sum())
