"""Cross-checks of the torch engine against autograd and against the numpy reference rules.

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


def matrix_online(rule, W0s, R0s, xs, targets, *, lr, transfers, loss, masks=None, rmasks=None):
    """The same online run with :func:`plasticity.sgd_step` (numpy float64)."""
    Ws, Rs = [w.copy() for w in W0s], [None if r is None else r.copy() for r in R0s]
    for k in range(len(xs)):
        Ws, _, Rs, _, _ = P.sgd_step(rule, Ws, None, Rs, xs[k : k + 1], targets[k : k + 1], transfers, loss, lr,
                                     masks=masks, rmasks=rmasks)
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
    """The torch online URFB/FRFB runs equal the numpy reference rule, example for example."""
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
    for name, rule, sparsity in (("urfb", P.URFB(1.0), 0.0), ("frfb", P.URFB(0.0), 0.0), ("urfb 50%", P.URFB(1.0), 0.5)):
        W0, R0, m, rm = _init(sizes, np.random.default_rng(opts.seed + 1), sparsity)
        tf = ["satlin"] * (len(sizes) - 2) + ["linear"]
        Wt, Rt = train_online(rule, sizes, W0, R0, xs, ys, lr=0.01, masks=m, rmasks=rm)
        Wn, Rn = matrix_online(rule, W0, R0, xs, ys, lr=0.01, transfers=tf, loss=P.Hinge(1.0), masks=m, rmasks=rm)
        diff = max(max(max_rel_diff(a, b) for a, b in zip(Wt, Wn)), max(max_rel_diff(a, b) for a, b in zip(Rt, Rn)))
        # k online steps of float64 arithmetic in two libraries: round-off grows ~linearly, ≪ 1e-10
        out.append(CheckResult(f"engine: online {name} torch ≡ numpy", diff, 1e-10, f"{k} examples"))
    return out
