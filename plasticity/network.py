"""Network-level reference math: forward pass, teaching signals of every layer, increments.

Pure functions of arrays (numpy or torch), used as the matrix twin of the circuits and as the
reference in the bridge's tests and metrics.  Notation as in :mod:`plasticity.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._validate import check_chain
from .losses import Loss
from .rules import Rule
from .transfers import Transfer, get_transfer


@dataclass
class Forward:
    """Activities ``hs = [h_0 = x, h_1, …, h_L]`` and pre-activations ``As = [a_1, …, a_L]``."""

    hs: list
    As: list

    @property
    def output(self):
        return self.hs[-1]


def forward(Ws, bs, x, transfers) -> Forward:
    """``a_l = h_{l−1} W_lᵀ + b_l``, ``h_l = g_l(a_l)``; ``bs`` may be ``None`` or hold ``None``s."""
    check_chain(Ws)
    transfers = [get_transfer(t) for t in transfers]
    if len(transfers) != len(Ws):
        raise ValueError(f"need one transfer per layer: got {len(transfers)} for {len(Ws)} layers")
    hs, As = [x], []
    for l, (W, g) in enumerate(zip(Ws, transfers)):
        a = hs[-1] @ W.T
        if bs is not None and bs[l] is not None:
            a = a + bs[l]
        As.append(a)
        hs.append(g(a))
    return Forward(hs, As)


def output_signal(loss: Loss, fwd: Forward, target, out_transfer: Transfer | str):
    """``δ_L = −∂L/∂a_L = (−∂L/∂y) ∘ g_L'(a_L)``."""
    return loss.teaching(fwd.output, target) * get_transfer(out_transfer).gate(fwd.As[-1])


def teaching_signals(rule: Rule, Ws, Rs, fwd: Forward, delta_L, transfers) -> list:
    """``[δ_1, …, δ_L]`` with ``δ_{l−1} = g'(a_{l−1}) ∘ rule.propagate(W_l, R_l, δ_l)``."""
    transfers = [get_transfer(t) for t in transfers]
    deltas = [None] * len(Ws)
    deltas[-1] = delta_L
    for l in range(len(Ws) - 1, 0, -1):
        R = None if Rs is None else Rs[l]
        carried = rule.propagate(Ws[l], R, deltas[l], delta_out=delta_L)
        deltas[l - 1] = transfers[l - 1].gate(fwd.As[l - 1]) * carried if rule.gated else carried
    return deltas


def increments(deltas, hs):
    """Batch-averaged Hebbian increments ``ΔW_l = ⟨δ_l h_{l−1}ᵀ⟩`` and ``Δb_l = ⟨δ_l⟩``."""
    n = deltas[0].shape[0]
    dWs = [d.T @ h / n for d, h in zip(deltas, hs[:-1])]
    dbs = [d.sum(0) / n for d in deltas]
    return dWs, dbs


def sgd_step(rule: Rule, Ws, bs, Rs, x, target, transfers, loss: Loss, lr: float, masks=None, rmasks=None):
    """One plain-SGD step of the matrix rule (in place on copies' values); returns the new state.

    The reference that the circuits and the torch engine are checked against:
    ``W_l ← W_l + η ΔW_l``, ``b_l ← b_l + η Δb_l``, and for learned feedback ``R_l ← R_l + η ΔR_l``,
    masked entries held at zero.
    """
    fwd = forward(Ws, bs, x, transfers)
    dL = output_signal(loss, fwd, target, transfers[-1])
    deltas = teaching_signals(rule, Ws, Rs, fwd, dL, transfers)
    dWs, dbs = increments(deltas, fwd.hs)
    new_W, new_b, new_R = [], [], []
    for l, W in enumerate(Ws):
        dW = dWs[l] if masks is None or masks[l] is None else dWs[l] * masks[l]
        new_W.append(W + lr * dW)
        new_b.append(None if bs is None or bs[l] is None else bs[l] + lr * dbs[l])
        R = None if Rs is None else Rs[l]
        inc = None if R is None else rule.feedback_increment(deltas[l], fwd.hs[l])
        inc = None if inc is None else inc / x.shape[0]
        if inc is not None and rmasks is not None and rmasks[l] is not None:
            inc = inc * rmasks[l]
        new_R.append(R if inc is None else R + lr * inc)
    return new_W, new_b, new_R, fwd, deltas
