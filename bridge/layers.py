"""Drop-in torch layers whose backward pass uses a rule's feedback operator.

``FeedbackLinear`` computes ``a = x Wᵀ + b`` like ``nn.Linear``; its backward returns

* ``grad_W = grad_a ᵀ x`` (so ``W.grad = −⟨δ hᵀ⟩`` and the optimizer moves W by ``+η δ hᵀ``),
* ``grad_x = rule.propagate_scaled(W, R, grad_a, −1/n)`` — the rule's operator in place of ``Wᵀ``
  (told that ``grad_a = −δ/n``, so that a per-example cap acts on the true δ),
* for learned feedback, ``grad_R = −rule.feedback_increment(δ, x)`` so that *the optimizer*
  moves R exactly as it moves W (weight decay, momentum and DDP apply unchanged).

Fixed feedback is a buffer; learned feedback is a parameter.  No tensor is reassigned inside
``forward``.  ``Activation`` applies a transfer from :mod:`plasticity.transfers` whose backward
multiplies by the plasticity gate ``g'(a)`` (Amit eq. 3 for the saturated linearity) or, for
rules that invert g themselves (dynamic inversion), passes the signal through.

Rules that are not layer-local (DFA) read the output layer's signal from a ``BackwardContext``
that every layer of one network shares: the output layer's backward runs first and stores it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from plasticity import Rule, get_transfer, make_rule
from plasticity.connectivity import random_mask


class BackwardContext:
    """State shared by the layers of one network during one backward pass."""

    def __init__(self):
        self.delta_out = None  # grad w.r.t. the output layer's pre-activation (= −δ_L / n)


class _FeedbackLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(x, W, b, R, layer):
        return x @ W.T if b is None else torch.addmm(b, x, W.T)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, W, b, R, layer = inputs
        ctx.save_for_backward(x, W, R)
        ctx.layer = layer
        ctx.has_bias = b is not None

    @staticmethod
    def backward(ctx, grad_out):
        x, W, R = ctx.saved_tensors
        layer = ctx.layer
        rule = layer.rule
        if layer.is_output and layer.context is not None:
            layer.context.delta_out = grad_out
        grad_x = grad_W = grad_b = grad_R = None
        if ctx.needs_input_grad[0]:
            delta_out = None if layer.context is None else layer.context.delta_out
            # grad_out = −δ/n: say so, for rules not linear in δ (the max_norm cap of PBP/NDI)
            grad_x = rule.propagate_scaled(W, R, grad_out, -1.0 / grad_out.shape[0], delta_out=delta_out)
        learn_R = R is not None and ctx.needs_input_grad[3]
        if ctx.needs_input_grad[1] or learn_R:
            grad_W = grad_out.T @ x
        if learn_R:
            # grad_out = −δ/n and the increment is linear in δ, so −ΔR/n = increment(grad_out);
            # mirrored rules (URFB) give it from W's own increment without a second product
            mirror = getattr(rule, "feedback_increment_from_weight", None)
            grad_R = mirror(grad_W) if mirror is not None else rule.feedback_increment(grad_out, x)
            if grad_R is not None and layer.feedback_mask is not None:
                grad_R = grad_R * layer.feedback_mask
        if grad_W is not None and layer.weight_mask is not None:
            grad_W = grad_W * layer.weight_mask
        if not ctx.needs_input_grad[1]:
            grad_W = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(0)
        return grad_x, grad_W, grad_b, grad_R, None


def _uniform(shape, scale, generator, dtype):
    return (torch.rand(shape, generator=generator, dtype=dtype) * 2.0 - 1.0) * scale


class FeedbackLinear(nn.Module):
    """``nn.Linear`` whose backward pass follows ``rule``.

    Parameters
    ----------
    in_features, out_features : layer sizes d_{l−1}, d_l.
    rule : a :class:`plasticity.Rule` or its name.
    feedback_dim : rows of R's second axis; d_l for layer-local rules, d_L for DFA.
    weight_scale, feedback_scale : initial entries ~ U(−scale, scale); ``None`` gives the
        ``nn.Linear`` default 1/√d_{l−1} for W and 1/√feedback_dim for R.
    sparsity, feedback_sparsity : fraction of W (resp. R) fixed at zero (Lillicrap/Amit 50 %).
    with_feedback : give the layer a feedback matrix (default: whenever the rule uses one).  The
        first layer's R would carry signals to the input, which nothing reads: networks build it
        only on request (``FeedbackMLP(input_feedback=True)``, e.g. to mirror a circuit).
    generator : ``torch.Generator`` for every random draw (required: randomness is explicit).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rule: Rule | str = "bp",
        *,
        bias: bool = True,
        feedback_dim: int | None = None,
        weight_scale: float | None = None,
        feedback_scale: float | None = None,
        sparsity: float = 0.0,
        feedback_sparsity: float = 0.0,
        with_feedback: bool = True,
        generator: torch.Generator,
        dtype=None,
    ):
        super().__init__()
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (randomness is always explicit)")
        self.rule = make_rule(rule)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.is_output = False
        self.context: BackwardContext | None = None
        ws = 1.0 / math.sqrt(in_features) if weight_scale is None else float(weight_scale)
        W = _uniform((out_features, in_features), ws, generator, dtype)
        self.register_buffer("weight_mask", None)
        if sparsity:
            self.weight_mask = torch.as_tensor(random_mask(W.shape, sparsity, _np_rng(generator)), dtype=dtype)
            W = W * self.weight_mask
        self.weight = nn.Parameter(W)
        self.bias = nn.Parameter(_uniform((out_features,), ws, generator, dtype)) if bias else None
        self.register_buffer("feedback_mask", None)
        if self.rule.needs_feedback and with_feedback:
            fdim = out_features if feedback_dim is None else int(feedback_dim)
            fs = 1.0 / math.sqrt(fdim) if feedback_scale is None else float(feedback_scale)
            R = _uniform((in_features, fdim), fs, generator, dtype)
            init = getattr(self.rule, "initial_feedback", None)
            if init is not None:  # e.g. DI's Tr-Init B = −W(0)ᵀ or SSA-stabilised R-Init (Podlaski §3.2)
                R = torch.as_tensor(init(W, R), dtype=dtype)
            if feedback_sparsity:
                self.feedback_mask = torch.as_tensor(
                    random_mask(R.shape, feedback_sparsity, _np_rng(generator)), dtype=dtype)
                R = R * self.feedback_mask
            if self.rule.feedback == "learned":
                self.feedback = nn.Parameter(R)
            else:
                self.register_buffer("feedback", R)
        else:
            self.feedback = None

    def forward(self, x):
        return _FeedbackLinearFn.apply(x, self.weight, self.bias, self.feedback, self)

    def extra_repr(self):
        return f"in={self.in_features}, out={self.out_features}, rule={self.rule}"


def _np_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator seeded from the torch generator's stream (keeps one source of randomness)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return np.random.default_rng(seed)


class _TransferFn(torch.autograd.Function):
    @staticmethod
    def forward(a, transfer, gated):
        return transfer.f(a)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, transfer, gated = inputs
        ctx.from_output = transfer.gate_from_output is not None
        ctx.save_for_backward(output if ctx.from_output else a)
        ctx.transfer, ctx.gated = transfer, gated

    @staticmethod
    def backward(ctx, grad):
        if not ctx.gated:
            return grad, None, None
        (v,) = ctx.saved_tensors
        gate = ctx.transfer.gate_from_output(v) if ctx.from_output else ctx.transfer.gate(v)
        return grad * gate, None, None


_NATIVE = {"tanh": torch.tanh, "logistic": torch.sigmoid, "relu": torch.relu}


class Activation(nn.Module):
    """``h = g(a)`` with backward ``g'(a) ∘ grad`` from :mod:`plasticity.transfers`."""

    def __init__(self, name: str, gated: bool = True):
        super().__init__()
        self.transfer = get_transfer(name)
        self.gated = gated

    def forward(self, a):
        if self.transfer.name == "linear":  # identity: gate 1, nothing to save
            return a
        if self.gated and self.transfer.name in _NATIVE:
            # torch's own kernel has exactly this gate (tests/test_bridge_core.py checks it)
            return _NATIVE[self.transfer.name](a)
        return _TransferFn.apply(a, self.transfer, self.gated)

    def extra_repr(self):
        return self.transfer.name
