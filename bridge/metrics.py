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

from plasticity import BP, PBP, forward, output_signal, teaching_signals


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two arrays viewed as vectors, in degrees (nan if either is zero)."""
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return math.nan
    a, b = a / na, b / nb  # 2·atan2(‖â − b̂‖, ‖â + b̂‖): accurate near 0° and 180°, unlike acos
    return math.degrees(2.0 * math.atan2(float((a - b).norm()), float((a + b).norm())))


@torch.no_grad()
def signal_angles(model, x, target, loss) -> dict:
    """Angles of the model's rule's hidden teaching signals to BP's and PBP's on one batch."""
    Ws = [w.detach().double() for w in model.weights()]
    bs = [None if b is None else b.detach().double() for b in model.biases()]
    Rs = [None if r is None else r.detach().double() for r in model.feedbacks()]
    transfers = model.transfers
    fwd = forward(Ws, bs, x.double(), transfers)
    target = target if target.dtype in (torch.int64, torch.int32) else target.double()
    dL = output_signal(loss, fwd, target, transfers[-1])
    out = {}
    rule_d = _signals(model.rule, Ws, Rs, fwd, dL, transfers)
    for ref_name, ref in (("bp", BP()), ("pbp", PBP())):
        ref_d = teaching_signals(ref, Ws, None, fwd, dL, transfers)
        out[f"angle_{ref_name}_deg"] = [angle_deg(r, s) for r, s in zip(rule_d[:-1], ref_d[:-1])]
    return out


def _signals(rule, Ws, Rs, fwd, dL, transfers):
    custom = getattr(rule, "reference_signals", None)
    if custom is not None:  # network-level rules supply their own reference
        return custom(Ws, Rs, fwd, dL, transfers)
    return teaching_signals(rule, Ws, Rs, fwd, dL, transfers)


@torch.no_grad()
def feedback_alignment(model) -> dict:
    """W–R alignment statistics per layer with a transposed-shape feedback (layers 2…L)."""
    out = {"alignment_deg": [], "sign_congruence": [], "rel_dist": []}
    for l, (W, R) in enumerate(zip(model.weights(), model.feedbacks())):
        if l == 0 or R is None or tuple(R.shape) != tuple(W.T.shape):
            continue
        Wt, R = W.detach().T.double(), R.detach().double()
        out["alignment_deg"].append(angle_deg(R, Wt))
        out["sign_congruence"].append(float((torch.sign(R) == torch.sign(Wt)).double().mean()))
        out["rel_dist"].append(float((R - Wt).norm() / Wt.norm()))
    return {k: v for k, v in out.items() if v}


def nse(y: torch.Tensor, target: torch.Tensor) -> float:
    """Normalised squared error ``Σ‖y* − y‖² / Σ‖y*‖²``."""
    return float(((target - y) ** 2).sum() / (target**2).sum())
