"""Cross-checks of the convolutional and locally connected feedback layers (float64).

* ``conv-fa-transpose-is-bp``: a conv net whose FA kernels equal W against torch autograd's
  backprop of the same net built from ``nn.Conv2d`` — weight gradients, ≤ 1e-12.
* ``conv-urfb-stays-bp``: URFB with R₀ = W₀ against autograd BP over 30 SGD steps, ≤ 1e-10.
* ``local-untied-rule``: a locally connected layer's per-position update against an explicit loop
  over output positions written here (δ_{l,i} x_{l−1,i+k}, Amit §4.1), and its FA input signal
  against the same loop with R, ≤ 1e-12.
* ``local-shared-is-conv``: a locally connected layer whose positions all hold the conv kernel
  against the conv layer, forward and backward, ≤ 1e-12.
"""

from __future__ import annotations

import torch
from torch import nn

from ..app.registry import CheckResult, max_rel_diff, register_check
from ..conv import FeedbackConv2d, LocallyConnected2d
from ..network import convert

TOL = 1e-12
TOL_TRAIN = 1e-10


def _ref_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 5, 3, stride=2), nn.Tanh(),
                         nn.Flatten(), nn.Linear(5 * 3 * 3, 3)).double()


def _mirror(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, FeedbackConv2d) and m.feedback is not None:
                m.feedback.copy_(m.weight)
            elif hasattr(m, "feedback") and m.feedback is not None:
                m.feedback.copy_(m.weight.T)


@register_check("conv-fa-transpose-is-bp")
def check_conv_fa(opts) -> list[CheckResult]:
    ref = _ref_net(opts.seed)
    g = torch.Generator().manual_seed(opts.seed)
    x = torch.randn(6, 2, 7, 7, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)
    fa = convert(ref, "fa", example_input=x, generator=g)
    _mirror(fa)
    for m in (ref, fa):
        nn.functional.cross_entropy(m(x), y).backward()
    d = max(max_rel_diff(fa[i].weight.grad, ref[i].weight.grad) for i in (0, 2, 5))
    return [CheckResult("conv-fa-transpose-is-bp", d, TOL, "FA conv net with R = W vs autograd backprop")]


@register_check("conv-urfb-stays-bp")
def check_conv_urfb(opts) -> list[CheckResult]:
    ref = _ref_net(opts.seed)
    g = torch.Generator().manual_seed(opts.seed + 1)
    x0 = torch.randn(6, 2, 7, 7, dtype=torch.float64, generator=g)
    ur = convert(ref, "urfb", example_input=x0, generator=g)
    _mirror(ur)
    o1, o2 = torch.optim.SGD(ref.parameters(), lr=0.05), torch.optim.SGD(ur.parameters(), lr=0.05)
    steps = 30
    for _ in range(steps):
        x = torch.randn(6, 2, 7, 7, dtype=torch.float64, generator=g)
        y = torch.randint(0, 3, (6,), generator=g)
        for m, o in ((ref, o1), (ur, o2)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    d = max(max_rel_diff(ur[i].weight, ref[i].weight) for i in (0, 2, 5))
    return [CheckResult("conv-urfb-stays-bp", d, TOL_TRAIN, f"URFB with R₀ = W₀ vs autograd BP, {steps} SGD steps")]


@register_check("local-untied-rule")
def check_local_rule(opts) -> list[CheckResult]:
    g = torch.Generator().manual_seed(opts.seed)
    lc = LocallyConnected2d(2, 3, 3, (6, 6), "fa", stride=1, padding=1, generator=g, dtype=torch.float64)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64, generator=g, requires_grad=True)
    out = lc(x)
    delta = torch.randn(out.shape, dtype=torch.float64, generator=g)
    gx, gW = torch.autograd.grad(out, (x, lc.weight), delta)
    # an explicit loop over output positions i: W_i's increment is δ_i x_{i+k}; the input signal is Σ_i R_iᵀ δ_i
    xp = nn.functional.pad(x.detach(), (1, 1, 1, 1))
    W_ref = torch.zeros_like(lc.weight)
    gx_ref = torch.zeros_like(xp)
    R = lc.feedback.detach()
    for r in range(6):
        for c in range(6):
            i = r * 6 + c
            patch = xp[:, :, r : r + 3, c : c + 3].reshape(4, -1)
            d_i = delta[:, :, r, c]
            W_ref[i] = d_i.T @ patch
            gx_ref[:, :, r : r + 3, c : c + 3] += (d_i @ R[i]).reshape(4, 2, 3, 3)
    dW = max_rel_diff(gW, W_ref)
    dx = max_rel_diff(gx, gx_ref[:, :, 1:-1, 1:-1])
    return [CheckResult("local-untied-rule-weight", dW, TOL, "per-position δ_i x_(i+k) vs an explicit loop"),
            CheckResult("local-untied-rule-signal", dx, TOL, "FA input signal Σ_i R_iᵀ δ_i vs an explicit loop")]


@register_check("local-shared-is-conv")
def check_local_shared(opts) -> list[CheckResult]:
    g = torch.Generator().manual_seed(opts.seed)
    conv = FeedbackConv2d(2, 3, 3, "fa", stride=2, padding=1, generator=g, dtype=torch.float64)
    lc = LocallyConnected2d(2, 3, 3, (7, 7), "fa", stride=2, padding=1, generator=g, dtype=torch.float64)
    L = lc.weight.shape[0]
    with torch.no_grad():
        lc.weight.copy_(conv.weight.reshape(3, -1).expand(L, 3, 18))
        lc.feedback.copy_(conv.feedback.reshape(3, -1).expand(L, 3, 18))
        lc.bias.copy_(conv.bias[:, None, None].expand_as(lc.bias))
    x = torch.randn(5, 2, 7, 7, dtype=torch.float64, generator=g, requires_grad=True)
    yc, yl = conv(x), lc(x)
    delta = torch.randn(yc.shape, dtype=torch.float64, generator=g)
    (gxc,) = torch.autograd.grad(yc, (x,), delta)
    (gxl,) = torch.autograd.grad(yl, (x,), delta)
    return [CheckResult("local-shared-is-conv-forward", max_rel_diff(yl, yc), TOL, "shared kernels: forward"),
            CheckResult("local-shared-is-conv-signal", max_rel_diff(gxl, gxc), TOL, "shared kernels: FA input signal")]
