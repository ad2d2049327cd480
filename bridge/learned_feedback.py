"""Torch side of the learned-feedback rules ``np`` (node perturbation) and ``rf`` (reciprocal
feedback by recirculation): noise streams, increments, metrics and matrix references.

Training needs nothing from here: the networks' engines (:class:`bridge.engines.NPEngine`,
:class:`bridge.engines.RFEngine`) do the noisy pass and the recirculation inside forward/backward,
so a plain loop trains both rules.  What this module adds:

* ``np``: :func:`np_increments` — the mean NP increments of one batch
  (:func:`plasticity.learned_feedback.np_feedback_increments`; Lansdell §2,
  ``ΔR_l = ⟨(−λ̂_{l−1} − R_l δ_l) δ_lᵀ⟩ − ridge·R_l``) with the engine's noise stream;
* ``rf``: :func:`rf_increments` — one recirculation per layer, ``ΔR_l = ⟨(x − x̂) hᵀ⟩``
  (:func:`plasticity.learned_feedback.rf_feedback_increments`);
* :func:`fit_feedback` (feedback-only training, the setting of Lansdell's theorems),
  :func:`learned_feedback_metrics` (Lansdell Fig. 1, Cameron's pseudoinverse panel), matrix
  references of one whole training step (:func:`bridge.app.runs.run_comparison` trains several rules side by side).

The noise comes from the engine's generator (seeded by the rule's ``seed``; saved in
``state_dict``).
"""

from __future__ import annotations

import torch

from plasticity.learned_feedback import (
    NP,
    RF,
    mp_residuals,
    np_feedback_increments,
    rel_error,
    rf_feedback_increments,
)

from .metrics import angle_deg, feedback_alignment, signal_angles

__all__ = [
    "noise_generator", "draw_np_noise", "draw_rf_noise", "np_increments", "rf_increments",
    "learned_feedback_metrics", "np_reference_step", "rf_reference_step", "fit_feedback",
]


def _engine(model):
    eng = model._modules.get("engine")
    if eng is None or not isinstance(model.rule, (NP, RF)):
        raise TypeError(f"the model trains with rule {model.rule.name!r}, not 'np' or 'rf'")
    return eng


def noise_generator(model, seed: int | None = None) -> torch.Generator:
    """The generator the model's engine draws noise from (seeded by the rule's ``seed``); with an
    explicit ``seed``, reseed it first."""
    eng = _engine(model)
    if seed is not None:
        eng.reseed(seed)
    return eng.generator


def draw_np_noise(model, n: int, dtype=None) -> list:
    """Standard-normal draws for one NP loss evaluation: ``n_samples`` lists of one (n, d_l) tensor
    per hidden layer, from the engine's stream (the engine calls exactly this)."""
    W0 = model.linears[0].weight
    return _engine(model).draw(n, W0.dtype if dtype is None else dtype, W0.device)


def draw_rf_noise(model) -> list:
    """Standard-normal (n_noise, d_{l−1}) draws for one recirculation, ``None`` for layer 1 (its R
    carries nothing); the engine calls exactly this."""
    W0 = model.linears[0].weight
    return _engine(model).draw(W0.dtype, W0.device)


def _state(model):
    Ws = [w.detach() for w in model.weights()]
    bs = [None if b is None else b.detach() for b in model.biases()]
    Rs = [None if r is None else r.detach() for r in model.feedbacks()]
    return Ws, bs, Rs


def _loss_spec(loss):
    return getattr(loss, "loss", loss)  # TeachingLoss → plasticity Loss


@torch.no_grad()
def np_increments(model, x, target, loss, xis_list=None):
    """Mean NP increments over ``rule.n_samples`` noisy passes; ``xis_list`` supplies the
    standard-normal draws (a list of per-sample lists) or ``None`` to draw them from the model's
    generator.  Returns the list of ΔR_l (``None`` for layer 1)."""
    rule: NP = model.rule
    Ws, bs, Rs = _state(model)
    if xis_list is None:
        xis_list = draw_np_noise(model, x.shape[0], dtype=x.dtype)
    total = None
    for xis in xis_list:
        incs, _ = np_feedback_increments(rule, Ws, bs, Rs, x, target, model.transfers, _loss_spec(loss), xis)
        total = incs if total is None else [None if a is None else a + b for a, b in zip(total, incs)]
    k = len(xis_list)
    return [None if a is None else a / k for a in total]


@torch.no_grad()
def rf_increments(model, xis=None):
    """Recirculation increments ``(dRs, dWs)`` for layers 2…L (layer 1's R carries nothing)."""
    rule: RF = model.rule
    Ws, _, Rs = _state(model)
    if xis is None:
        xis = draw_rf_noise(model)
    return rf_feedback_increments(rule, Ws, Rs, xis)


# ---------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def learned_feedback_metrics(model, x=None, target=None, loss=None) -> dict:
    """Lansdell Fig. 1 and Cameron's pseudoinverse metrics for layers 2…L.

    * ``rel_dist`` / ``alignment_deg`` / ``sign_congruence``: R_l against ``W_lᵀ``
      (:func:`bridge.metrics.feedback_alignment`), for every rule with a transposed-shape R;
    * ``rel_dist_target``: ``‖R_l − T_l‖/‖T_l‖`` against the matrix the rule should learn —
      ``W_lᵀ`` (np layerwise), ``(W_L ⋯ W_l)ᵀ`` (np direct, Corollary 1), ``W_l⁺`` (rf);
    * ``mp_<cond>`` (rf): the four Moore–Penrose residuals of ``R_l`` as ``W_l⁺``;
    * with a batch ``x, target, loss``: ``angle_bp_deg`` (synthetic vs true teaching signal, Fig. 1B)
      from :func:`bridge.metrics.signal_angles`.
    """
    out = dict(feedback_alignment(model))
    Ws = [w.detach().double() for w in model.weights()]
    Rs = [None if r is None else r.detach().double() for r in model.feedbacks()]
    rule = model.rule
    tgt_err, mp = [], {k: [] for k in ("axa", "xax", "ax_sym", "xa_sym")}
    for l in range(1, len(Ws)):
        R = Rs[l]
        if R is None:
            continue
        if isinstance(rule, RF):
            T = torch.linalg.pinv(Ws[l])
            for k, v in mp_residuals(Ws[l], R).items():
                mp[k].append(v)
        elif rule.direct:
            P = Ws[-1]
            for W in reversed(Ws[l:-1]):
                P = P @ W
            T = P.T
        else:
            T = Ws[l].T
        tgt_err.append(rel_error(R, T))
        if tuple(R.shape) == tuple(T.shape) and isinstance(rule, RF):
            out.setdefault("alignment_pinv_deg", []).append(angle_deg(R, T))
    if tgt_err:
        out["rel_dist_target"] = tgt_err
    if isinstance(rule, RF):
        out.update({f"mp_{k}": v for k, v in mp.items()})
    if x is not None:
        out.update(signal_angles(model, x, target, _loss_spec(loss)))
    return out


# ---------------------------------------------------------------------------------------------------
# matrix references for one whole training step (used by tests and checks)
# ---------------------------------------------------------------------------------------------------


def np_reference_step(rule: NP, Ws, bs, Rs, x, target, transfers, loss, lr: float, xis):
    """One plain-SGD step of the full NP rule in pure matrix form (numpy or torch):
    ``W ← W + lr ⟨δ hᵀ⟩``, ``b ← b + lr ⟨δ⟩``, ``R ← R + lr · feedback_lr · ΔR``."""
    from plasticity.network import increments

    incs, info = np_feedback_increments(rule, Ws, bs, Rs, x, target, transfers, loss, xis)
    dWs, dbs = increments(info["deltas"], info["forward"].hs)
    new_W = [W + lr * d for W, d in zip(Ws, dWs)]
    new_b = [None if b is None else b + lr * d for b, d in zip(bs, dbs)]
    new_R = [R if i is None else R + lr * rule.feedback_lr * i for R, i in zip(Rs, incs)]
    return new_W, new_b, new_R


def rf_reference_step(rule: RF, Ws, bs, Rs, x, target, transfers, loss, lr: float, xis):
    """One plain-SGD step of the full RF rule in matrix form (task step on W, recirculation on R)."""
    from plasticity.network import forward, increments, output_signal, teaching_signals

    fwd = forward(Ws, bs, x, transfers)
    deltas = teaching_signals(rule, Ws, Rs, fwd, output_signal(loss, fwd, target, transfers[-1]), transfers)
    dWs, dbs = increments(deltas, fwd.hs)
    dRs, dWr = rf_feedback_increments(rule, Ws, Rs, xis)
    new_W = [W + lr * d + (0 if r is None else lr * rule.feedback_lr * r) for W, d, r in zip(Ws, dWs, dWr)]
    new_b = [None if b is None else b + lr * d for b, d in zip(bs, dbs)]
    new_R = [R if i is None else R + lr * rule.feedback_lr * i for R, i in zip(Rs, dRs)]
    return new_W, new_b, new_R


@torch.no_grad()
def fit_feedback(model, x, target, loss, *, steps: int, lr: float, batch_size: int = 32, seed=0,
                 record_every: int = 0) -> list[dict]:
    """Train only the feedback matrices (W, b frozen) with the rule's own learning signal — the NP
    least-squares step or the RF recirculation step — by plain SGD ``R ← R + lr · ΔR``.

    This is the setting of Lansdell's theorems (fixed W, many samples) and of the poster's
    pseudoinverse panel.  Minibatches are drawn from ``x, target`` with ``seed`` (int or
    ``np.random.Generator``).  Returns ``[{"step", **learned_feedback_metrics(model)}]`` every
    ``record_every`` steps (and at the start and end) when ``record_every`` > 0.
    """
    import numpy as np

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rule = model.rule
    if not isinstance(rule, (NP, RF)):
        raise ValueError(f"fit_feedback needs rule 'np' or 'rf', the model runs {rule.name!r}")
    hist = []

    def rec(k):
        if record_every:
            hist.append({"step": k, **learned_feedback_metrics(model)})

    rec(0)
    n = x.shape[0]
    for k in range(1, int(steps) + 1):
        if isinstance(rule, NP):
            idx = torch.as_tensor(rng.integers(0, n, size=min(batch_size, n)), device=x.device)
            incs = np_increments(model, x[idx], target[idx], loss)
        else:
            incs, _ = rf_increments(model)
        for lin, inc in zip(model.linears, incs):
            if inc is not None:
                g = inc if lin.feedback_mask is None else inc * lin.feedback_mask
                lin.feedback.add_(lr * g)
        if record_every and (k % record_every == 0 or k == steps):
            rec(k)
    return hist
