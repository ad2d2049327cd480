"""Minimal, independent numpy float64 implementations of single training steps.

These are the *references* of the engine cross-checks: they are written directly from the papers'
equations and share no code with :mod:`plasticity` or the torch engine (no ``Rule.propagate``, no
``plasticity.network``, no ``plasticity.losses``).  A cross-check that compares the engine with one
of these fails when either side is wrong; one that compares the engine with ``plasticity`` alone
cannot catch an error in the shared rule code.

Conventions (the package's): batch-first arrays; ``W_l`` is (d_l, d_{l−1}); feedback ``R_l`` is
(d_{l−1}, d_l) (or (d_{l−1}, d_L) for a direct rule); teaching signals ``δ = −∂L/∂a``.

* :func:`urfb_online` — Amit (2021) §3.1, one example at a time, no biases::

      δ_L = −∂L/∂a_L,   δ_{l−1} = g'(a_{l−1}) ∘ (R_l δ_l),
      ΔW_l = η δ_l h_{l−1}ᵀ,   ΔR_l = ε η h_{l−1} δ_lᵀ       (both from the pre-update R)

* :func:`np_step` — Lansdell et al. (2019) node perturbation, one minibatch: a clean pass, for each
  of the ``len(xis_list)`` samples a noisy pass ``h̃_l = g(a_l) + c_h ξ_l`` on the hidden layers,
  ``λ̂_l = (L̃ − L) ξ_l / c_h`` and the least-squares increment
  ``ΔR_l = ⟨(−λ̂_{l−1} − R_l r_l) r_lᵀ⟩ − ridge·R_l`` with regressor ``r_l = δ_l`` (layerwise) or
  ``δ_L`` (direct), averaged over the samples; then ``W ← W + η⟨δ hᵀ⟩``, ``b ← b + η⟨δ⟩``,
  ``R ← R + η · feedback_lr · ΔR``.
* :func:`rf_step` — Cameron et al. recirculation, one minibatch: for each layer with a feedback
  matrix and noise, ``x = σ ξ``, ``h = W x``, ``x̂ = R h``, ``ĥ = W x̂``;
  ``ΔR = ⟨(x − x̂) hᵀ⟩ − decay·R``, ``ΔW_rec = ⟨(h − ĥ) xᵀ⟩`` (forward recirculation only); the task
  step carries δ down with ``R`` like FA; ``W ← W + η⟨δ hᵀ⟩ + η·feedback_lr·ΔW_rec``,
  ``R ← R + η · feedback_lr · ΔR``.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------------
# transfer functions and losses, written out again
# ---------------------------------------------------------------------------------------------------


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


_G = {
    "linear": (lambda a: a, lambda a: np.ones_like(a)),
    "satlin": (lambda a: np.minimum(np.maximum(a, -1.0), 1.0), lambda a: (np.abs(a) < 1.0).astype(np.float64)),
    "tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
    "logistic": (_sigmoid, lambda a: _sigmoid(a) * (1.0 - _sigmoid(a))),
    "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(np.float64)),
}


def _name(t) -> str:
    return t if isinstance(t, str) else t.name


def g(name, a):
    return _G[_name(name)][0](a)


def g_prime(name, a):
    return _G[_name(name)][1](a)


def _onehot(target, y):
    target = np.asarray(target)
    if target.ndim == 1:
        t = np.zeros_like(y)
        t[np.arange(len(target)), target.astype(np.int64)] = 1.0
        return t
    return np.asarray(target, dtype=np.float64)


def _loss_name(loss) -> str:
    return loss if isinstance(loss, str) else loss.name


def loss_value(loss, y, target, mu: float = 1.0):
    """Per-example loss: ``mse`` ½‖t − y‖², ``ce`` −Σ t log softmax(y), ``hinge`` Amit eq. 4."""
    t = _onehot(target, y)
    kind = _loss_name(loss)
    if kind == "mse":
        return 0.5 * ((t - y) ** 2).sum(1)
    if kind == "ce":
        m = y.max(1, keepdims=True)
        logp = y - m - np.log(np.exp(y - m).sum(1, keepdims=True))
        return -(t * logp).sum(1)
    if kind == "hinge":
        mu = getattr(loss, "mu", mu)
        return (t * np.maximum(1.0 - y, 0.0) + mu * (1.0 - t) * np.maximum(1.0 + y, 0.0)).sum(1)
    raise ValueError(f"unknown loss {kind!r}")


def loss_teaching(loss, y, target, mu: float = 1.0):
    """``−∂L/∂y`` per example: ``t − y`` (mse), ``t − softmax(y)`` (ce), eq. 6 (hinge)."""
    t = _onehot(target, y)
    kind = _loss_name(loss)
    if kind == "mse":
        return t - y
    if kind == "ce":
        e = np.exp(y - y.max(1, keepdims=True))
        return t - e / e.sum(1, keepdims=True)
    if kind == "hinge":
        mu = getattr(loss, "mu", mu)
        return t * (y <= 1.0) - mu * (1.0 - t) * (y >= -1.0)
    raise ValueError(f"unknown loss {kind!r}")


def _forward(Ws, bs, x, transfers, noise=None):
    """Activities and pre-activations; ``noise[l]`` (already scaled) is added to hidden layer l+1."""
    hs, As = [np.asarray(x, dtype=np.float64)], []
    for l, W in enumerate(Ws):
        a = hs[-1] @ W.T
        if bs is not None and bs[l] is not None:
            a = a + bs[l]
        h = g(transfers[l], a)
        if noise is not None and l < len(Ws) - 1:
            h = h + noise[l]
        As.append(a)
        hs.append(h)
    return hs, As


# ---------------------------------------------------------------------------------------------------
# URFB / FRFB online (Amit 2021)
# ---------------------------------------------------------------------------------------------------


def urfb_online(W0s, R0s, xs, targets, *, lr, epsilon, transfers, loss="hinge", mu=1.0, masks=None, rmasks=None):
    """Online (batch-1) URFB from ``(W0s, R0s)`` over the examples ``xs``; returns the final (Ws, Rs).

    ``R0s[l]`` is (d_{l−1}, d_l) (``None`` allowed for layer 1); masks hold the fixed zeros.
    """
    Ws = [np.array(W, dtype=np.float64) for W in W0s]
    Rs = [None if R is None else np.array(R, dtype=np.float64) for R in R0s]
    L = len(Ws)
    for k in range(len(xs)):
        x = np.asarray(xs[k], dtype=np.float64)
        hs, As = [x], []
        for l in range(L):
            As.append(Ws[l] @ hs[-1])
            hs.append(g(transfers[l], As[-1]))
        y = hs[-1][None, :]
        tgt = np.asarray(targets)[k : k + 1]
        d = [None] * L
        d[L - 1] = loss_teaching(loss, y, tgt, mu)[0] * g_prime(transfers[-1], As[-1])
        for l in range(L - 1, 0, -1):
            d[l - 1] = g_prime(transfers[l - 1], As[l - 1]) * (Rs[l] @ d[l])
        for l in range(L):
            dW = lr * np.outer(d[l], hs[l])
            if masks is not None and masks[l] is not None:
                dW = dW * masks[l]
            if Rs[l] is not None:
                dR = epsilon * lr * np.outer(hs[l], d[l])
                if rmasks is not None and rmasks[l] is not None:
                    dR = dR * rmasks[l]
                Rs[l] = Rs[l] + dR
            Ws[l] = Ws[l] + dW
    return Ws, Rs


# ---------------------------------------------------------------------------------------------------
# node perturbation (Lansdell 2019)
# ---------------------------------------------------------------------------------------------------


def _task_signals(Ws, Rs, As, dL, transfers, direct):
    """δ_L given; ``δ_{l−1} = g'(a_{l−1}) ∘ (δ_l R_lᵀ)`` (or ``δ_L R_lᵀ`` when direct)."""
    L = len(Ws)
    d = [None] * L
    d[-1] = dL
    for l in range(L - 1, 0, -1):
        src = dL if direct else d[l]
        d[l - 1] = g_prime(transfers[l - 1], As[l - 1]) * (src @ Rs[l].T)
    return d


def np_increments(Ws, bs, Rs, x, target, transfers, loss, xis_list, *, c_h, ridge=0.0, mode="layerwise"):
    """Mean least-squares increments ΔR_l over the noise samples (``None`` for layer 1).

    ``xis_list``: one list per noisy pass of standard-normal (n, d_l) arrays, one per hidden layer.
    Returns ``(incs, deltas, hs)`` — the task's teaching signals and the clean activities too.
    """
    direct = mode == "direct"
    hs, As = _forward(Ws, bs, x, transfers)
    dL = loss_teaching(loss, hs[-1], target) * g_prime(transfers[-1], As[-1])
    deltas = _task_signals(Ws, Rs, As, dL, transfers, direct)
    L_clean = loss_value(loss, hs[-1], target)
    n = dL.shape[0]
    total = [None] * len(Ws)
    for xis in xis_list:
        xis = [np.asarray(v, dtype=np.float64) for v in xis]
        noisy, _ = _forward(Ws, bs, x, transfers, noise=[c_h * v for v in xis])
        L_noisy = loss_value(loss, noisy[-1], target)
        for l in range(1, len(Ws)):
            lam = ((L_noisy - L_clean) / c_h)[:, None] * xis[l - 1]  # λ̂ ≈ ∂L/∂h_{l−1}
            r = dL if direct else deltas[l]
            inc = (-lam - r @ Rs[l].T).T @ r / n - ridge * Rs[l]
            total[l] = inc if total[l] is None else total[l] + inc
    k = len(xis_list)
    return [None if t is None else t / k for t in total], deltas, hs


def np_step(Ws, bs, Rs, x, target, transfers, loss, lr, xis_list, *, c_h, feedback_lr=1.0, ridge=0.0,
            mode="layerwise"):
    """One plain-SGD NP step; returns ``(new_Ws, new_bs, new_Rs)``."""
    incs, deltas, hs = np_increments(Ws, bs, Rs, x, target, transfers, loss, xis_list, c_h=c_h, ridge=ridge,
                                     mode=mode)
    n = deltas[0].shape[0]
    new_W = [W + lr * (d.T @ h) / n for W, d, h in zip(Ws, deltas, hs[:-1])]
    new_b = [None if bs is None or bs[l] is None else bs[l] + lr * deltas[l].sum(0) / n for l in range(len(Ws))]
    new_R = [R if i is None else R + lr * feedback_lr * i for R, i in zip(Rs, incs)]
    return new_W, new_b, new_R


def np_step_for(rule, *args, **kw):
    """:func:`np_step` with the parameters of a :class:`plasticity.learned_feedback.NP` spec."""
    return np_step(*args, c_h=rule.c_h, feedback_lr=rule.feedback_lr, ridge=rule.ridge, mode=rule.mode, **kw)


# ---------------------------------------------------------------------------------------------------
# reciprocal feedback by recirculation (Cameron et al.)
# ---------------------------------------------------------------------------------------------------


def rf_increments(Ws, Rs, xis, *, noise_std, decay=0.0, forward_recirculation=False):
    """``(dRs, dWs)``: recirculation increments per layer (``None`` where R or the noise is absent,
    and for dW unless forward recirculation is on)."""
    dRs, dWs = [], []
    for W, R, xi in zip(Ws, Rs, xis):
        if R is None or xi is None:
            dRs.append(None)
            dWs.append(None)
            continue
        X = noise_std * np.asarray(xi, dtype=np.float64)  # (m, d_in)
        m = X.shape[0]
        dR = np.zeros_like(R)
        dW = np.zeros_like(W)
        for j in range(m):  # one noise sample at a time, column vectors as in the poster
            xj = X[j]
            h = W @ xj
            xhat = R @ h
            hhat = W @ xhat
            dR += np.outer(xj - xhat, h)
            dW += np.outer(h - hhat, xj)
        dR = dR / m - decay * R
        dRs.append(dR)
        dWs.append(dW / m if forward_recirculation else None)
    return dRs, dWs


def rf_step(Ws, bs, Rs, x, target, transfers, loss, lr, xis, *, noise_std, feedback_lr=1.0, decay=0.0,
            forward_recirculation=False):
    """One plain-SGD RF step (task step carried by R, recirculation on R, optionally on W)."""
    hs, As = _forward(Ws, bs, x, transfers)
    dL = loss_teaching(loss, hs[-1], target) * g_prime(transfers[-1], As[-1])
    deltas = _task_signals(Ws, Rs, As, dL, transfers, direct=False)
    dRs, dWr = rf_increments(Ws, Rs, xis, noise_std=noise_std, decay=decay,
                             forward_recirculation=forward_recirculation)
    n = dL.shape[0]
    new_W = []
    for W, d, h, r in zip(Ws, deltas, hs[:-1], dWr):
        nW = W + lr * (d.T @ h) / n
        new_W.append(nW if r is None else nW + lr * feedback_lr * r)
    new_b = [None if bs is None or bs[l] is None else bs[l] + lr * deltas[l].sum(0) / n for l in range(len(Ws))]
    new_R = [R if i is None else R + lr * feedback_lr * i for R, i in zip(Rs, dRs)]
    return new_W, new_b, new_R


def rf_step_for(rule, *args, **kw):
    """:func:`rf_step` with the parameters of a :class:`plasticity.learned_feedback.RF` spec."""
    return rf_step(*args, noise_std=rule.noise_std, feedback_lr=rule.feedback_lr, decay=rule.decay,
                   forward_recirculation=rule.forward_recirculation, **kw)
