"""Cross-checks of the torch engine against autograd and against independent numpy references.

Also home of :func:`train_online`, the bridge's online (batch-1) run that the Brian2 layered
circuit is compared with.
"""

from __future__ import annotations

import numpy as np
import torch

import plasticity as P

from ..app.registry import CheckResult, max_rel_diff, register_check
from ..losses import TeachingLoss
from ..network import FeedbackMLP
from . import reference


def train_online(rule, sizes, W0s, R0s, xs, targets, *, lr, activation="satlin", output_activation="linear",
                 loss=None, masks=None, rmasks=None):
    """Train a bias-free :class:`FeedbackMLP` one example at a time (plain SGD, float64).

    ``W0s``/``R0s`` are numpy arrays in torch layout (R for every layer, the first included);
    ``masks``/``rmasks`` hold the fixed-zero patterns (1 = connection present).  Returns the
    final ``(Ws, Rs)`` as numpy arrays.
    """
    loss = loss or P.Hinge(1.0)
    model = FeedbackMLP(sizes, rule, activation=activation, output_activation=output_activation, bias=False,
                        input_feedback=True, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        for l, lin in enumerate(model.linears):
            lin.weight.copy_(torch.as_tensor(W0s[l]))
            if lin.feedback is not None:
                lin.feedback.copy_(torch.as_tensor(R0s[l]))
            if masks is not None and masks[l] is not None:
                lin.weight_mask = torch.as_tensor(masks[l], dtype=torch.float64)
            if rmasks is not None and rmasks[l] is not None and lin.feedback is not None:
                lin.feedback_mask = torch.as_tensor(rmasks[l], dtype=torch.float64)
    crit = TeachingLoss(loss)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    X = torch.as_tensor(np.asarray(xs, dtype=np.float64))
    T = torch.as_tensor(np.asarray(targets))
    for k in range(len(X)):
        opt.zero_grad(set_to_none=True)
        crit(model(X[k : k + 1]), T[k : k + 1]).backward()
        opt.step()
    Ws = [l.weight.detach().numpy().copy() for l in model.linears]
    Rs = [None if l.feedback is None else l.feedback.detach().numpy().copy() for l in model.linears]
    return Ws, Rs


def _init(sizes, rng, sparsity=0.0):
    Ws = [rng.uniform(-1, 1, (sizes[l + 1], sizes[l])) / np.sqrt(sizes[l]) for l in range(len(sizes) - 1)]
    Rs = [rng.uniform(-1, 1, (sizes[l], sizes[l + 1])) / np.sqrt(sizes[l + 1]) for l in range(len(sizes) - 1)]
    masks = rmasks = None
    if sparsity:
        masks = [P.random_mask(w.shape, sparsity, rng) for w in Ws]
        rmasks = [P.random_mask(r.shape, sparsity, rng) for r in Rs]
        Ws = [w * m for w, m in zip(Ws, masks)]
        Rs = [r * m for r, m in zip(Rs, rmasks)]
    return Ws, Rs, masks, rmasks


@register_check("engine-fa-transpose-is-bp")
def check_fa_transpose(opts):
    """FA with R = Wᵀ gives backprop's gradients (torch autograd) in every layer."""
    sizes = tuple(opts.sizes or (30, 20, 10, 10))
    g = torch.Generator().manual_seed(opts.seed)
    fa = FeedbackMLP(sizes, "fa", activation="tanh", generator=g, dtype=torch.float64)
    ref = []
    for lin in fa.linears:
        r = torch.nn.Linear(lin.in_features, lin.out_features).double()
        with torch.no_grad():
            r.weight.copy_(lin.weight)
            r.bias.copy_(lin.bias)
            if lin.feedback is not None:
                lin.feedback.copy_(lin.weight.T)
        ref.append(r)
    x = torch.randn(32, sizes[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, sizes[-1], (32,), generator=g)
    h = x
    for i, r in enumerate(ref):
        h = r(h) if i == len(ref) - 1 else torch.tanh(r(h))
    torch.nn.functional.cross_entropy(h, y).backward()
    TeachingLoss("ce")(fa(x), y).backward()
    diff = max(max_rel_diff(l.weight.grad, r.weight.grad) for l, r in zip(fa.linears, ref))
    # float64 with differently ordered sums: a few ulps of the largest gradient
    return [CheckResult("engine: FA(R=Wᵀ) ≡ BP (autograd)", diff, 1e-12, f"sizes {'-'.join(map(str, sizes))}")]


@register_check("engine-online-urfb")
def check_online_urfb(opts):
    """The torch online URFB/FRFB runs equal a minimal numpy URFB (:func:`.reference.urfb_online`,
    written from Amit §3.1 without the plasticity rule code), example for example."""
    sizes = tuple(opts.sizes or (64, 30, 10))
    k = opts.examples or 100
    from ..data import digits

    d = digits(seed=opts.seed)
    rng = np.random.default_rng(opts.seed)
    if sizes[0] != d.n_in or sizes[-1] != d.n_out:
        xs, ys = rng.normal(size=(k, sizes[0])), rng.integers(0, sizes[-1], size=k)
    else:
        xs, ys = d.x_train[:k].astype(np.float64), d.y_train[:k]
    out = []
    for name, eps, sparsity in (("urfb", 1.0, 0.0), ("frfb", 0.0, 0.0), ("urfb 50%", 1.0, 0.5)):
        W0, R0, m, rm = _init(sizes, np.random.default_rng(opts.seed + 1), sparsity)
        tf = ["satlin"] * (len(sizes) - 2) + ["linear"]
        Wt, Rt = train_online(P.URFB(eps), sizes, W0, R0, xs, ys, lr=0.01, masks=m, rmasks=rm)
        Wn, Rn = reference.urfb_online(W0, R0, xs, ys, lr=0.01, epsilon=eps, transfers=tf, loss="hinge",
                                       masks=m, rmasks=rm)
        # compare the changes, so that a small error in a small update is not hidden under ‖W0‖
        diff = max(max(max_rel_diff(a - w, b - w) for a, b, w in zip(Wt, Wn, W0)),
                   max(max_rel_diff(a, b) for a, b in zip(Rt, Rn)))
        # k online steps of float64 arithmetic in two libraries: round-off grows ~linearly, ≪ 1e-10
        out.append(CheckResult(f"engine: online {name} torch ≡ minimal numpy URFB", diff, 1e-10,
                               f"{k} examples; ‖ΔW1‖/‖W1‖ {np.linalg.norm(Wn[0] - W0[0]) / np.linalg.norm(W0[0]):.2f}"))
    return out
