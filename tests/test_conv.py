"""Convolutional and locally connected feedback layers against mathematics (float64, tolerances
written next to each assertion)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bridge import TeachingLoss, convert
from bridge.conv import FeedbackConv2d, LocallyConnected2d
from bridge.metrics import feedback_alignment, signal_angles
from plasticity import CrossEntropy


def _gen(s=0):
    return torch.Generator().manual_seed(s)


def test_conv_with_feedback_equal_to_weight_is_autograds_input_gradient():
    """FA with R = W: the propagated signal equals autograd's input gradient of nn.functional.conv2d
    exactly (the same kernel call), and W's gradient equals autograd's."""
    layer = FeedbackConv2d(3, 5, 3, "fa", stride=2, padding=1, generator=_gen(), dtype=torch.float64)
    with torch.no_grad():
        layer.feedback.copy_(layer.weight)
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 5, 5, 5, dtype=torch.float64)
    gx, gW = torch.autograd.grad(layer(x), (x, layer.weight), g)
    x2 = x.detach().clone().requires_grad_(True)
    W2 = layer.weight.detach().clone().requires_grad_(True)
    rx, rW = torch.autograd.grad(nn.functional.conv2d(x2, W2, layer.bias.detach(), 2, 1), (x2, W2), g)
    assert torch.equal(gx, rx)
    torch.testing.assert_close(gW, rW, rtol=1e-13, atol=0)
    # and with the random R it is not BP's
    layer2 = FeedbackConv2d(3, 5, 3, "fa", stride=2, padding=1, generator=_gen(), dtype=torch.float64)
    (gx2,) = torch.autograd.grad(layer2(x), (x,), g)
    assert (gx2 - rx).abs().max() > 0.1 * rx.abs().max()


def _conv_net(rule, seed=0):
    g = _gen(seed)
    return nn.Sequential(FeedbackConv2d(1, 4, 3, rule, padding=1, generator=g, dtype=torch.float64), nn.Tanh(),
                         FeedbackConv2d(4, 6, 3, rule, stride=2, generator=g, dtype=torch.float64), nn.Tanh(),
                         nn.Flatten(), nn.Linear(6 * 3 * 3, 3).double())


def test_urfb_conv_with_r0_equal_w0_stays_backprop_for_100_steps():
    """URFB (ε = 1) with R₀ = W₀: R receives W's own increment, so R = W and the net is BP exactly,
    step after step (100 SGD steps, relative difference ≤ 1e-12)."""
    torch.manual_seed(0)
    bp = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 6, 3, stride=2), nn.Tanh(),
                       nn.Flatten(), nn.Linear(54, 3)).double()
    x0 = torch.randn(8, 1, 8, 8, dtype=torch.float64)
    ur = convert(bp, "urfb", example_input=x0, generator=_gen(1))
    with torch.no_grad():
        ur[2].feedback.copy_(ur[2].weight)  # a conv kernel's feedback acts transposed already
        ur[5].feedback.copy_(ur[5].weight.T)
    assert ur[0].feedback is None  # the input layer's feedback would carry nothing
    W0 = ur[0].weight.detach().clone()
    ob, ou = torch.optim.SGD(bp.parameters(), lr=0.05), torch.optim.SGD(ur.parameters(), lr=0.05)
    for _ in range(100):
        x, y = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (8,))
        for m, o in ((bp, ob), (ur, ou)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for a, b in ((bp[0].weight, ur[0].weight), (bp[2].weight, ur[2].weight), (bp[5].weight, ur[5].weight)):
        assert (a - b).abs().max() / a.abs().max() < 1e-12
    assert (ur[2].feedback - ur[2].weight).abs().max() / ur[2].weight.abs().max() < 1e-12
    assert (ur[0].weight - W0).abs().max() > 1e-3  # and it learned


def test_locally_connected_with_shared_weights_equals_conv_forward_and_backward():
    conv = FeedbackConv2d(2, 3, 3, "fa", stride=2, padding=1, generator=_gen(), dtype=torch.float64)
    lc = LocallyConnected2d(2, 3, 3, (7, 7), "fa", stride=2, padding=1, generator=_gen(), dtype=torch.float64)
    L = lc.weight.shape[0]
    with torch.no_grad():
        lc.weight.copy_(conv.weight.reshape(3, -1).expand(L, 3, 18))
        lc.feedback.copy_(conv.feedback.reshape(3, -1).expand(L, 3, 18))
        lc.bias.copy_(conv.bias[:, None, None].expand_as(lc.bias))
    x = torch.randn(5, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    yc, yl = conv(x), lc(x)
    torch.testing.assert_close(yl, yc, rtol=1e-12, atol=1e-14)
    g = torch.randn_like(yc)
    gxc, gWc = torch.autograd.grad(yc, (x, conv.weight), g)
    gxl, gWl = torch.autograd.grad(yl, (x, lc.weight), g)
    torch.testing.assert_close(gxl, gxc, rtol=1e-12, atol=1e-14)
    # untied: each position's increment is its own δ_{l,i} x_{l−1,i+k}; summed they are the conv's
    torch.testing.assert_close(gWl.sum(0), gWc.reshape(3, -1), rtol=1e-12, atol=1e-14)
    cols = nn.functional.unfold(x.detach(), 3, padding=1, stride=2)  # (n, K, L)
    gl = g.reshape(5, 3, -1)
    for i in (0, L // 2, L - 1):
        torch.testing.assert_close(gWl[i], gl[:, :, i].T @ cols[:, :, i], rtol=1e-12, atol=1e-14)
    m = lc.memory_bytes(128)
    assert m["weight"] == lc.weight.numel() * 8 and m["unfolded_input"] == 128 * 18 * L * 8


def test_sparse_connectivity_holds_after_training():
    g = _gen(3)
    net = nn.Sequential(FeedbackConv2d(1, 4, 3, "urfb", sparsity=0.5, feedback_sparsity=0.5, generator=g,
                                       dtype=torch.float64), nn.Tanh(),
                        LocallyConnected2d(4, 4, 3, (6, 6), "urfb", sparsity=0.5, feedback_sparsity=0.5,
                                           generator=g, dtype=torch.float64), nn.Tanh(), nn.Flatten(),
                        nn.Linear(64, 3).double())
    x0 = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    net = convert(net, "urfb", example_input=x0, generator=g)  # converts the Linear, wires all layers
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        TeachingLoss("ce")(net(torch.randn(4, 1, 8, 8, dtype=torch.float64)), torch.randint(0, 3, (4,))).backward()
        opt.step()
    for layer in (net[0], net[2]):
        assert bool((layer.weight[layer.weight_mask == 0] == 0).all())
        assert bool((layer.feedback[layer.feedback_mask == 0] == 0).all())
        assert 0.4 < float(layer.weight_mask.mean()) < 0.6


def test_dfa_conv_from_convert_and_metrics():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                      nn.Linear(4 * 4 * 4, 5)).double()
    x, y = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randint(0, 5, (6,))
    c = convert(m, "dfa", example_input=x, generator=_gen())
    assert isinstance(c[2], FeedbackConv2d) and tuple(c[2].feedback.shape) == (3 * 6 * 6, 5)
    TeachingLoss("ce")(c(x), y).backward()
    assert c[0].weight.grad is not None and torch.isfinite(c[0].weight.grad).all()
    a = signal_angles(c, x, y, CrossEntropy())
    assert len(a["angle_bp_deg"]) == 2
    assert min(a["angle_bp_deg"]) > 10  # the BP reference pass really is BP (not the layers' own DFA)
    assert "angle_pbp_deg" not in a  # pseudobackprop has no convolutional form
    fa = convert(m, "fa", example_input=x, generator=_gen())
    with torch.no_grad():
        fa[2].feedback.copy_(fa[2].weight)
        fa[5].feedback.copy_(fa[5].weight.T)
    assert max(signal_angles(fa, x, y, CrossEntropy())["angle_bp_deg"]) < 1e-5
    assert max(feedback_alignment(fa)["alignment_deg"]) < 1e-5


def test_conv_refuses_rules_without_a_convolutional_form():
    with pytest.raises(ValueError, match="no convolutional form"):
        FeedbackConv2d(1, 2, 3, "pbp", generator=_gen())
    with pytest.raises(ValueError, match="must be \\(n, in_channels=1"):
        FeedbackConv2d(1, 2, 3, "fa", generator=_gen())(torch.randn(2, 3, 5, 5))


def test_np_direct_conv_feedback_step_equals_an_independent_computation():
    """Lansdell §3.3: NP with direct feedback in a CNN.  One step's ΔR for every layer against a
    computation written here with plain torch ops (clean and noisy passes, λ̂ = (L̃ − L)ξ/c_h,
    ΔR = ⟨(−λ̂ − R e) eᵀ⟩ with e = δ_L), on the same noise, float64, ≤ 1e-12."""
    import bridge.learned_feedback  # noqa: F401
    from plasticity import NP

    rule = NP(mode="direct", c_h=0.1, feedback_lr=1.0, seed=5)
    g = _gen(2)
    net = nn.Sequential(FeedbackConv2d(1, 3, 3, rule, padding=1, with_feedback=False, generator=g,
                                       dtype=torch.float64), nn.Tanh(),
                        FeedbackConv2d(3, 4, 3, rule, stride=2, padding=1, feedback_dim=3, in_size=(6, 6), generator=g,
                                       dtype=torch.float64), nn.Tanh(), nn.Flatten(),
                        __import__("bridge").FeedbackLinear(36, 3, rule, feedback_dim=3, generator=g,
                                                            dtype=torch.float64))
    x, y = torch.randn(5, 1, 6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    net = convert(net, rule, example_input=x, generator=g)
    R = {i: net[i].feedback.detach().clone() for i in (2, 5)}
    twin_gen = torch.Generator().manual_seed(5)  # the engine's stream, replayed
    xi1 = torch.randn((5, 3 * 6 * 6), generator=twin_gen, dtype=torch.float64)
    xi2 = torch.randn((5, 4 * 3 * 3), generator=twin_gen, dtype=torch.float64)
    TeachingLoss("ce")(net(x), y).backward()
    W1, b1, W2, b2, W3, b3 = (t.detach() for t in (net[0].weight, net[0].bias, net[2].weight, net[2].bias,
                                                    net[5].weight, net[5].bias))

    def run(n1=0.0, n2=0.0):
        h1 = torch.tanh(nn.functional.conv2d(x, W1, b1, padding=1)) + n1
        h2 = torch.tanh(nn.functional.conv2d(h1, W2, b2, stride=2, padding=1)).reshape(5, -1) + n2
        return h2 @ W3.T + b3

    def per_example(out):
        return -torch.log_softmax(out, 1)[torch.arange(5), y]

    out = run()
    e = torch.nn.functional.one_hot(y, 3) - torch.softmax(out, 1)  # δ_L = −∂L/∂a_L
    dL = per_example(run(0.1 * xi1.reshape(5, 3, 6, 6), 0.1 * xi2)) - per_example(out)
    for i, xi in ((2, xi1), (5, xi2)):
        t = -dL[:, None] * xi / 0.1
        inc = (t - e @ R[i].T).T @ e / 5
        got = -net[i].feedback.grad  # R.grad = −feedback_lr · ΔR
        assert (got - inc).abs().max() / inc.abs().max() < 1e-12


@pytest.mark.parametrize("name", ["amit-simpnet", "amit-deepnet", "amit-deepernet", "amit-deepnet-s", "lansdell-cnn"])
def test_architectures_build_train_and_keep_the_papers_shapes(name):
    from bridge.archs import AmitMaxPool, build_arch, glorot_scale

    m = build_arch(name, "urfb", 10, generator=_gen(), dtype=torch.float64)
    x, y = torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    assert m(x).shape == (4, 10)
    layers = [mod for mod in m.modules() if hasattr(mod, "rule") and hasattr(mod, "weight")]
    assert layers[0].feedback is None and all(lin.feedback is not None for lin in layers[1:])
    if name == "amit-simpnet":  # Conv 32 5x5 → Maxpool 3 (32 → 16) → Full 500; Glorot bound
        assert layers[0].weight.shape == (32, 3, 5, 5) and layers[1].weight.shape == (500, 32 * 16 * 16)
        b = glorot_scale(3 * 25, 32 * 25)
        top = float(layers[0].weight.detach().abs().max())
        assert 0.9 * b < top <= b
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    w0 = layers[1].weight.detach().clone()
    TeachingLoss("hinge")(m(x), y).backward()
    opt.step()
    assert not torch.equal(layers[1].weight, w0)
    pool = AmitMaxPool()
    neg = -torch.ones(1, 1, 4, 4)
    assert torch.equal(pool(neg)[0, 0, 0, 0], torch.tensor(0.0))  # zero padding outside the grid, not −∞
    assert pool(torch.zeros(1, 1, 32, 32)).shape[-1] == 16
