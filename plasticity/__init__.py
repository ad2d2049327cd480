"""What each learning rule *is*: parameters, sign convention and matrix-level reference math.

Nothing here imports torch or Brian2 at module level; :mod:`circuits` (Brian2) and :mod:`bridge`
(torch) both build from these specs.

Sign convention (one for the whole package)
-------------------------------------------
Layer l has pre-activation ``a_l = W_l h_{l−1} + b_l`` and activity ``h_l = g_l(a_l)``, ``h_0 = x``;
``W_l`` is (d_l, d_{l−1}) like ``torch.nn.Linear.weight``; feedback ``R_l`` (the papers' B) is
(d_{l−1}, d_l).  The **teaching signal** is

    δ_l = −∂L/∂a_l,     ΔW_l = η δ_l h_{l−1}ᵀ   (post × pre, Hebbian in form)

so in torch ``W.grad = −δ hᵀ`` and any optimizer minimises L.

Mapping to the papers:

* Amit (2021) uses exactly this convention (δ_L = −∂L/∂x_L, eq. 5–6; his h is our a, his x our h).
* Lillicrap et al. (2016) write ``e = y* − y`` and ``Δh_BP = Wᵀe``: their e equals our δ_L for
  the squared error with linear outputs, so their Δh is our propagated signal.
* Podlaski & Machens (2020) write errors as ``∂L/∂a`` (opposite sign) and B for R; every
  propagation operator is linear in δ, so their matrices (eq. 10–12, Algorithm 4) apply as is.
* Lansdell et al. (2019) write ``e`` for the gradient-like error and B for the feedback; the
  node-perturbation estimate λ̂ approximates ``∂L/∂h`` and is negated at the boundary.
"""

from .connectivity import random_mask
from .losses import LOSSES, MSE, CrossEntropy, Hinge, Loss, get_loss
from .network import Forward, forward, increments, output_signal, sgd_step, teaching_signals
from .rules import (
    BP, DFA, FA, FRFB, NDI, PBP, RULES, URFB, ActivityLearnedFeedback, InitialisedFeedback, MirroredFeedback,
    NetworkRule, Rule, make_rule, register_rule, rule_parameters,
)
from .transfers import TRANSFERS, Transfer, get_transfer

# rule families in their own modules; importing them registers "di", "np", "rf", "rf-exact"
from . import amit, inversion, learned_feedback  # noqa: E402,I001
from .inversion import DI  # noqa: E402
from .learned_feedback import NP, RF, RFExact  # noqa: E402

__all__ = [
    "BP", "DFA", "FA", "FRFB", "NDI", "PBP", "URFB", "DI", "NP", "RF", "RFExact", "Rule", "RULES", "make_rule", "register_rule",
    "rule_parameters", "MirroredFeedback", "InitialisedFeedback", "NetworkRule", "ActivityLearnedFeedback",
    "Loss", "MSE", "CrossEntropy", "Hinge", "LOSSES", "get_loss",
    "Transfer", "TRANSFERS", "get_transfer", "random_mask",
    "Forward", "forward", "output_signal", "teaching_signals", "increments", "sgd_step",
    "amit", "inversion", "learned_feedback",
]
