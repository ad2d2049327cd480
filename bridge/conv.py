"""Convolutional (tied) and locally connected (untied) layers whose backward pass follows a rule.

``FeedbackConv2d`` computes ``nn.Conv2d``'s output; its backward returns ``W``'s usual gradient
(``W.grad = −⟨δ ⋆ h⟩``, the convolutional form of post × pre) and sends down

* ``bp``: the transposed convolution with W (autograd's input gradient);
* ``fa``/``frfb``: the transposed convolution with a fixed random kernel R of W's shape;
* ``urfb`` (Amit §3.1): the same with a learned R that receives ε × W's own increment;
* ``dfa``: ``R e`` straight from the output error, R of shape (C·H·W of the input, d_L).

``LocallyConnected2d`` (Amit §4.1) has a convolution's connectivity with every output position's
weights untied: ``W`` is (positions, C_out, C_in·k·k) and position i is updated by
``δ_{l,i} x_{l−1,i+k}`` alone; its feedback R is untied the same way.  It is computed with
``unfold`` and batched products — no dense matrix — and holds W, R and the unfolded input.

Both layers take ``sparsity``/``feedback_sparsity`` (a fixed random fraction of W's, resp. R's,
entries at zero — Amit's 50 % connectivity) and join a network's backward context like
:class:`bridge.layers.FeedbackLinear`, so DFA finds the output error and ``convert`` maps
``nn.Conv2d`` onto ``FeedbackConv2d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plasticity import BP, DFA, FA, NP, URFB, MirroredFeedback, Rule, make_rule
from plasticity.connectivity import random_mask

from .layers import BackwardContext, FeedbackLayer, _np_rng, _positive_int, _scale, _uniform

__all__ = ["FeedbackConv2d", "LocallyConnected2d", "conv_form"]


def conv_form(rule: Rule) -> str:
    """How a convolutional layer carries ``rule``'s signal: ``weight`` (W), ``feedback`` (a kernel R of
    W's shape) or ``direct`` (R from the output error)."""
    if type(rule) is BP:
        return "weight"
    if isinstance(rule, (FA, URFB)):
        return "feedback"
    if isinstance(rule, DFA) or (isinstance(rule, NP) and rule.direct):
        return "direct"
    raise ValueError(f"rule {rule.name!r} has no convolutional form here; valid: bp, fa, frfb, urfb, dfa, "
                     "np (mode='direct', Lansdell §3.3)")


def _pair(name, v):
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return tuple(_positive_int(name, a) if name != "padding" else int(a) for a in t)


class _ConvBase(FeedbackLayer):
    """What the two layers share: rule, masks, feedback, the backward context."""

    def _geometry(self, in_channels, out_channels, kernel_size, stride, padding, generator, dtype):
        """Validate and store channels, kernel, stride and padding; returns the dtype to use."""
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (randomness is always explicit)")
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride, self.padding = _pair("stride", stride), _pair("padding", padding)
        return torch.get_default_dtype() if dtype is None else dtype

    @property
    def form(self) -> str:
        """How the layer carries its rule's signal now (metrics swap the rule for BP's)."""
        return conv_form(self.rule)

    def _setup(self, rule, W, feedback_shape, *, bias_shape, bias, weight_scale, feedback_scale, sparsity,
               feedback_sparsity, with_feedback, generator, dtype):
        self.rule = make_rule(rule)
        conv_form(self.rule)  # a clear error for rules without a convolutional form
        self.is_output, self.index = True, 0
        self.context = BackwardContext([self])
        self.register_buffer("weight_mask", None)
        if sparsity:
            self.weight_mask = torch.as_tensor(random_mask(tuple(W.shape), sparsity, _np_rng(generator)), dtype=dtype)
            W = W * self.weight_mask
        self.weight = nn.Parameter(W)
        ws = weight_scale
        self.bias = nn.Parameter(_uniform(bias_shape, ws, generator, dtype)) if bias else None
        self.register_buffer("feedback_mask", None)
        if self.form != "weight" and with_feedback:
            fs = feedback_scale
            if fs is None:
                fs = ws if self.form == "feedback" else 1.0 / math.sqrt(feedback_shape[-1])
            R = _uniform(feedback_shape, fs, generator, dtype)
            if feedback_sparsity:
                self.feedback_mask = torch.as_tensor(random_mask(tuple(R.shape), feedback_sparsity,
                                                                 _np_rng(generator)), dtype=dtype)
                R = R * self.feedback_mask
            if self.rule.feedback == "learned":
                self.feedback = nn.Parameter(R)
            else:
                self.register_buffer("feedback", R)
        else:
            self.feedback = None


    def _noisy(self, rec, x):
        if rec.engine is not None and rec.engine.needs_loss:
            rec.data.setdefault("shapes", {})[self.index] = tuple(x.shape[1:])
        if rec.noise is not None and self.index in rec.noise:  # node perturbation's noisy pass
            x = x + rec.noise[self.index].reshape(x.shape)
        return x


class _ConvFn(torch.autograd.Function):
    @staticmethod
    def forward(x, W, b, R, layer, rec):
        return layer._forward(x, W, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, W, b, R, layer, rec = inputs
        ctx.save_for_backward(x, W)
        ctx.R, ctx.layer, ctx.rec, ctx.has_bias = R, layer, rec, b is not None

    @staticmethod
    def backward(ctx, grad_out):
        x, W = ctx.saved_tensors
        R, layer, rec = ctx.R, ctx.layer, ctx.rec
        rule, eng = layer.rule, rec.engine
        n = grad_out.shape[0]
        if layer.is_output:
            rec.delta_out = grad_out.reshape(n, -1)
            if eng is not None:
                eng.output_backward(rec, rec.delta_out)
        if rec.capture:
            rec.captured[layer.index] = grad_out.detach().reshape(n, -1).clone()
        grad_x = grad_W = grad_b = grad_R = None
        if ctx.needs_input_grad[0]:
            if layer.form == "direct":
                if rec.delta_out is None:
                    raise RuntimeError(f"rule {rule.name!r}: the output error is missing (is this layer in a network "
                                       "whose output layer ran its backward first?)")
                grad_x = (rec.delta_out @ R.T).reshape(x.shape)
            else:
                grad_x = layer._input_grad(x, W if layer.form == "weight" else R, grad_out)
        learn_R = R is not None and ctx.needs_input_grad[3] and not rec.capture
        if ctx.needs_input_grad[1] or learn_R:
            grad_W = layer._weight_grad(x, W, grad_out)
        if learn_R and eng is not None:
            grad_R = eng.feedback_grad(rec, layer.index, grad_out, x)  # e.g. node perturbation's least squares
            if grad_R is not None and layer.feedback_mask is not None:
                grad_R = grad_R * layer.feedback_mask
        elif learn_R:
            if not isinstance(rule, MirroredFeedback):
                raise RuntimeError(f"rule {rule.name!r}: no convolutional feedback learning")
            # ΔR = ε ΔW (mirrored): the rule's own increment, on W's increment viewed as a matrix
            flat = grad_W.reshape(grad_W.shape[0], -1)
            grad_R = rule.feedback_increment_from_weight(flat).T.reshape(R.shape)
            if layer.feedback_mask is not None:
                grad_R = grad_R * layer.feedback_mask
        if grad_W is not None and layer.weight_mask is not None:
            grad_W = grad_W * layer.weight_mask
        if not ctx.needs_input_grad[1]:
            grad_W = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = layer._bias_grad(grad_out)
        return grad_x, grad_W, grad_b, grad_R, None, None


class FeedbackConv2d(_ConvBase):
    """``nn.Conv2d`` (tied weights) whose backward follows ``rule`` (module docstring).

    ``feedback_dim``: d_L, for DFA (R is then (C_in·H·W, d_L), and ``in_size=(H, W)`` is required).
    Weights ~ U(−s, s) with ``s = weight_scale`` or 1/√(C_in·k·k) (``nn.Conv2d``'s default scale).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rule: Rule | str = "bp", *,
                 stride=1, padding=0, bias: bool = True, weight_scale=None, feedback_scale=None,
                 sparsity: float = 0.0, feedback_sparsity: float = 0.0, with_feedback: bool = True,
                 feedback_dim: int | None = None, in_size=None, generator: torch.Generator, dtype=None):
        super().__init__()
        dtype = self._geometry(in_channels, out_channels, kernel_size, stride, padding, generator, dtype)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        ws = _scale("weight_scale", weight_scale)
        ws = 1.0 / math.sqrt(fan_in) if ws is None else ws
        W = _uniform((self.out_channels, self.in_channels, *self.kernel_size), ws, generator, dtype)
        form = conv_form(make_rule(rule))
        if form == "direct" and with_feedback:
            if feedback_dim is None or in_size is None:
                raise ValueError("FeedbackConv2d with a direct rule (dfa, np direct) needs feedback_dim=d_L and in_size=(H, W)")
            fshape = (self.in_channels * _pair("in_size", in_size)[0] * _pair("in_size", in_size)[1],
                      _positive_int("feedback_dim", feedback_dim))
        else:
            fshape = tuple(W.shape)
        self._setup(rule, W, fshape, bias_shape=(self.out_channels,), bias=bias, weight_scale=ws,
                    feedback_scale=_scale("feedback_scale", feedback_scale, zero_ok=True), sparsity=sparsity,
                    feedback_sparsity=feedback_sparsity, with_feedback=with_feedback, generator=generator, dtype=dtype)

    def _forward(self, x, W, b):
        return F.conv2d(x, W, b, self.stride, self.padding)

    def _input_grad(self, x, M, g):
        return torch.nn.grad.conv2d_input(x.shape, M, g, self.stride, self.padding)

    def _weight_grad(self, x, W, g):
        return torch.nn.grad.conv2d_weight(x, W.shape, g, self.stride, self.padding)

    def _bias_grad(self, g):
        return g.sum((0, 2, 3))

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"FeedbackConv2d: input has shape {tuple(x.shape)}; it must be (n, "
                             f"in_channels={self.in_channels}, H, W)")
        rec = self.context.record()
        x = self._noisy(rec, x)
        return _ConvFn.apply(x, self.weight, self.bias, self.feedback, self, rec)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, rule={self.rule}")


class LocallyConnected2d(_ConvBase):
    """A convolution's connectivity with untied weights (Amit §4.1): ``W`` (L, C_out, C_in·k·k) for
    the L = H'·W' output positions, bias (C_out, H', W'); ``in_size=(H, W)`` fixes L.  Weights
    ~ U(−s, s), ``s = weight_scale`` or 1/√(C_in·k·k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, in_size, rule: Rule | str = "bp", *,
                 stride=1, padding=0, bias: bool = True, weight_scale=None, feedback_scale=None,
                 sparsity: float = 0.0, feedback_sparsity: float = 0.0, with_feedback: bool = True,
                 feedback_dim: int | None = None, generator: torch.Generator, dtype=None):
        super().__init__()
        dtype = self._geometry(in_channels, out_channels, kernel_size, stride, padding, generator, dtype)
        self.in_size = _pair("in_size", in_size)
        self.out_size = tuple((self.in_size[i] + 2 * self.padding[i] - self.kernel_size[i]) // self.stride[i] + 1
                              for i in range(2))
        if min(self.out_size) < 1:
            raise ValueError(f"LocallyConnected2d: kernel {self.kernel_size} does not fit input {self.in_size}")
        K = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        L = self.out_size[0] * self.out_size[1]
        ws = _scale("weight_scale", weight_scale)
        ws = 1.0 / math.sqrt(K) if ws is None else ws
        W = _uniform((L, self.out_channels, K), ws, generator, dtype)
        form = conv_form(make_rule(rule))
        if form == "direct" and with_feedback:
            if feedback_dim is None:
                raise ValueError("LocallyConnected2d with a direct rule (dfa, np direct) needs feedback_dim=d_L")
            fshape = (self.in_channels * self.in_size[0] * self.in_size[1], _positive_int("feedback_dim", feedback_dim))
        else:
            fshape = tuple(W.shape)
        self._setup(rule, W, fshape, bias_shape=(self.out_channels, *self.out_size), bias=bias, weight_scale=ws,
                    feedback_scale=_scale("feedback_scale", feedback_scale, zero_ok=True), sparsity=sparsity,
                    feedback_sparsity=feedback_sparsity, with_feedback=with_feedback, generator=generator, dtype=dtype)

    def _unfold(self, x):
        return F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (n, K, L)

    def _forward(self, x, W, b):
        out = torch.einsum("nkl,lok->nol", self._unfold(x), W).reshape(x.shape[0], self.out_channels, *self.out_size)
        return out if b is None else out + b

    def _input_grad(self, x, M, g):
        cols = torch.einsum("nol,lok->nkl", g.reshape(g.shape[0], self.out_channels, -1), M)
        return F.fold(cols, self.in_size, self.kernel_size, padding=self.padding, stride=self.stride)

    def _weight_grad(self, x, W, g):
        return torch.einsum("nol,nkl->lok", g.reshape(g.shape[0], self.out_channels, -1), self._unfold(x))

    def _bias_grad(self, g):
        return g.sum(0)

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.in_size):
            raise ValueError(f"LocallyConnected2d: input has shape {tuple(x.shape)}; it must be (n, "
                             f"{self.in_channels}, {self.in_size[0]}, {self.in_size[1]})")
        rec = self.context.record()
        x = self._noisy(rec, x)
        return _ConvFn.apply(x, self.weight, self.bias, self.feedback, self, rec)

    def memory_bytes(self, batch: int) -> dict:
        """Bytes held by W, R and, per batch, the unfolded input saved for the backward pass."""
        el = self.weight.element_size()
        K = self.weight.shape[-1]
        L = self.weight.shape[0]
        return {"weight": self.weight.numel() * el, "feedback": 0 if self.feedback is None else self.feedback.numel() * el,
                "unfolded_input": batch * K * L * el}

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, in_size={self.in_size}, "
                f"out_size={self.out_size}, rule={self.rule}")
