"""Drop-in torch layers whose backward pass uses a rule's feedback operator.

``FeedbackLinear`` computes ``a = x Wᵀ + b`` like ``nn.Linear`` (any leading dimensions); its
backward returns

* ``grad_W = grad_a ᵀ x`` (so ``W.grad = −⟨δ hᵀ⟩`` and the optimizer moves W by ``+η δ hᵀ``),
* ``grad_x = rule.propagate_scaled(W, R, grad_a, −1/n)`` — the rule's operator in place of ``Wᵀ``
  (told that ``grad_a = −δ/n``, so that a per-example cap acts on the true δ),
* for learned feedback, ``grad_R = −ΔR`` so that *the optimizer* moves R exactly as it moves W
  (weight decay, momentum and DDP's all-reduce apply unchanged).

Fixed feedback is a buffer; learned feedback is a parameter.  No tensor is reassigned inside
``forward``.  ``Activation`` applies a transfer from :mod:`plasticity.transfers` whose backward
multiplies by the plasticity gate ``g'(a)`` (Amit eq. 3 for the saturated linearity) or, for
rules that invert g themselves (dynamic inversion), passes the signal through.

Layers of one network share a :class:`BackwardContext`.  Each forward pass of the network opens a
:class:`PassRecord` that every layer captures at its forward; the backward of that pass reads it
(DFA's output signal, and the per-pass data of network-level engines: node perturbation's noisy
pass, recirculation, dynamic inversion's controller — :mod:`bridge.engines`).  So every rule
trains correctly in the plainest loop, ``loss.backward(); opt.step()``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from plasticity import InitialisedFeedback, MirroredFeedback, Rule, get_transfer, make_rule
from plasticity.connectivity import random_mask


class PassRecord:
    """What one forward pass of a network leaves for its own backward pass."""

    __slots__ = ("delta_out", "inputs", "engine", "data", "capture", "captured", "noise", "__weakref__")

    def __init__(self, engine=None, inputs=None):
        self.delta_out = None  # grad w.r.t. the output layer's pre-activation (= −δ_L / n)
        self.inputs = inputs  # (args, kwargs) of the network's forward, for engines that rerun it
        self.engine = engine
        self.data = {}  # engine-specific per-pass data
        self.capture = False  # metrics: store each layer's grad_a, learn nothing
        self.captured = {}
        self.noise = None  # {layer index: tensor added to that layer's input} during a noisy pass


class BackwardContext:
    """State shared by the layers of one network: its layers in forward order (output last), the
    network-level engine of the rule (or ``None``) and the pass being recorded."""

    def __init__(self, layers=(), engine=None, network=None):
        self.layers = list(layers)
        self.engine = engine
        self.network = network  # the module whose forward opens passes (reruns it for a noisy pass)
        self.current: PassRecord | None = None
        self.capture = False
        self.pending_noise = None

    def begin(self, inputs=None) -> PassRecord:
        rec = PassRecord(self.engine, inputs)
        rec.capture = self.capture
        rec.noise = self.pending_noise
        self.current = rec
        return rec

    def record(self) -> PassRecord:
        """The open pass, or a fresh one for layers used outside a network's forward."""
        return self.current if self.current is not None else self.begin()


class _FeedbackLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(x, W, b, R, layer, rec):
        return torch.nn.functional.linear(x, W, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, W, b, R, layer, rec = inputs
        ctx.save_for_backward(x, W)
        ctx.R = R  # not a saved tensor: a DI engine may stabilise R in place during this backward
        ctx.layer, ctx.rec = layer, rec
        ctx.has_bias = b is not None

    @staticmethod
    def backward(ctx, grad_out):
        x, W = ctx.saved_tensors
        R, layer, rec = ctx.R, ctx.layer, ctx.rec
        rule, eng, idx = layer.rule, rec.engine, layer.index
        shape_x = x.shape
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        x2 = x.reshape(-1, shape_x[-1])
        n = g2.shape[0]
        if layer.is_output:
            rec.delta_out = g2
            if eng is not None:
                eng.output_backward(rec, g2)
        if rec.capture:
            rec.captured[idx] = g2.detach().clone()
        grad_x = grad_W = grad_b = grad_R = None
        if ctx.needs_input_grad[0] and n:
            carried = None if eng is None else eng.propagate(rec, idx, g2)
            if carried is None:
                # grad_out = −δ/n: say so, for rules not linear in δ (the max_norm cap of PBP/NDI)
                carried = rule.propagate_scaled(W, R, g2, -1.0 / n, delta_out=rec.delta_out)
            grad_x = carried.reshape(shape_x)
        learn_R = R is not None and ctx.needs_input_grad[3] and not rec.capture
        if ctx.needs_input_grad[1] or learn_R:
            grad_W = g2.T @ x2
        if learn_R:
            if eng is not None:
                grad_R = eng.feedback_grad(rec, idx, g2, x2)
            elif isinstance(rule, MirroredFeedback):  # URFB: −ΔR/n = ε (−ΔW/n)ᵀ, no second product
                grad_R = rule.feedback_increment_from_weight(grad_W)
            else:
                grad_R = rule.feedback_increment(g2, x2)
                if grad_R is None:
                    raise RuntimeError(f"rule {rule.name!r} learns its feedback but gives no increment from the "
                                       "backward pass, and no engine is attached to this layer")
            if grad_R is not None and layer.feedback_mask is not None:
                grad_R = grad_R * layer.feedback_mask
        if grad_W is not None and eng is not None and not rec.capture:
            extra = eng.weight_grad_extra(rec, idx)
            if extra is not None:
                grad_W = grad_W + extra
        if grad_W is not None and layer.weight_mask is not None:
            grad_W = grad_W * layer.weight_mask
        if not ctx.needs_input_grad[1]:
            grad_W = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)
        return grad_x, grad_W, grad_b, grad_R, None, None


def _uniform(shape, scale, generator, dtype):
    return (torch.rand(shape, generator=generator, dtype=dtype) * 2.0 - 1.0) * scale


def _positive_int(name, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        if isinstance(v, float) and v.is_integer() and v >= 1:
            return int(v)
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _scale(name, v, *, zero_ok=False):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or None, got {v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not zero_ok):
        raise ValueError(f"{name} must be a finite number {'≥ 0' if zero_ok else '> 0'} or None, got {v!r}")
    return f


class FeedbackLayer(nn.Module):
    """Base of the layers whose backward follows a rule (linear, convolutional, locally connected):
    each has ``rule``, ``weight``, ``bias``, ``feedback`` (or ``None``), masks, and joins a network's
    :class:`BackwardContext` (``context``, ``index``, ``is_output``)."""


class FeedbackLinear(FeedbackLayer):
    """``nn.Linear`` whose backward pass follows ``rule``.

    Parameters
    ----------
    in_features, out_features : layer sizes d_{l−1}, d_l (positive integers).
    rule : a :class:`plasticity.Rule` or its name.
    feedback_dim : rows of R's second axis; d_l for layer-local rules, d_L for DFA.
    weight_scale, feedback_scale : initial entries ~ U(−scale, scale), scale > 0; ``None`` gives the
        ``nn.Linear`` default 1/√d_{l−1} for W and 1/√feedback_dim for R.
    sparsity, feedback_sparsity : fraction of W (resp. R) fixed at zero (Lillicrap/Amit 50 %).
    with_feedback : give the layer a feedback matrix (default: whenever the rule uses one).  The
        first layer's R would carry signals to the input, which nothing reads: networks build it
        only on request (``FeedbackMLP(input_feedback=True)``, e.g. to mirror a circuit).
    generator : ``torch.Generator`` for every random draw (required: randomness is explicit).

    Under ``torch.autocast`` the layer computes in the autocast dtype, like ``nn.Linear``.
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
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        ws, fs = _scale("weight_scale", weight_scale), _scale("feedback_scale", feedback_scale, zero_ok=True)
        self.is_output = True
        self.index = 0
        self.context = BackwardContext([self])
        ws = 1.0 / math.sqrt(self.in_features) if ws is None else ws
        W = _uniform((self.out_features, self.in_features), ws, generator, dtype)
        self.register_buffer("weight_mask", None)
        if sparsity:
            self.weight_mask = torch.as_tensor(random_mask(W.shape, sparsity, _np_rng(generator)), dtype=dtype)
            W = W * self.weight_mask
        self.weight = nn.Parameter(W)
        self.bias = nn.Parameter(_uniform((self.out_features,), ws, generator, dtype)) if bias else None
        self.register_buffer("feedback_mask", None)
        if self.rule.needs_feedback and with_feedback:
            fdim = self.out_features if feedback_dim is None else _positive_int("feedback_dim", feedback_dim)
            fs = 1.0 / math.sqrt(fdim) if fs is None else fs
            R = _uniform((self.in_features, fdim), fs, generator, dtype)
            if isinstance(self.rule, InitialisedFeedback):  # e.g. DI's Tr-Init B = −W(0)ᵀ (Podlaski §3.2)
                R = torch.as_tensor(self.rule.initial_feedback(W, R), dtype=dtype)
            if feedback_sparsity:
                self.feedback_mask = torch.as_tensor(
                    random_mask(R.shape, feedback_sparsity, _np_rng(generator)), dtype=dtype)
                R = R * self.feedback_mask
            if self.rule.feedback == "learned":
                # stored in W's memory order (R is Wᵀ-shaped): the mirrored increment ε ΔWᵀ and R then have
                # the same strides, so the optimizer's update runs over contiguous memory
                self.feedback = nn.Parameter(R.T.contiguous().T)
            else:
                self.register_buffer("feedback", R)
        else:
            self.feedback = None

    def forward(self, x):
        if not torch.is_tensor(x):
            raise TypeError(f"{type(self).__name__}: input must be a tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: input has shape {tuple(x.shape)}; its last dimension must be "
                             f"in_features={self.in_features}")
        if x.numel() == 0:
            raise ValueError(f"{type(self).__name__}: empty input of shape {tuple(x.shape)}")
        W, b, R = self.weight, self.bias, self.feedback
        if R is not None and (R.shape[0] != self.in_features or R.ndim != 2):
            raise ValueError(f"{type(self).__name__}: feedback has shape {tuple(R.shape)}; it must be "
                             f"(in_features={self.in_features}, d)")
        rec = self.context.record()
        if rec.engine is not None and rec.engine.needs_loss:
            rec.data.setdefault("shapes", {})[self.index] = tuple(x.shape[1:])
        if rec.noise is not None and self.index in rec.noise:  # node perturbation's noisy pass
            x = x + rec.noise[self.index].reshape(x.shape)
        dev = x.device.type
        if torch.is_autocast_enabled(dev):
            dt = torch.get_autocast_dtype(dev)
            x, W = x.to(dt), W.to(dt)
            b = None if b is None else b.to(dt)
            R = None if R is None else R.to(dt)
            with torch.autocast(dev, enabled=False):
                return _FeedbackLinearFn.apply(x, W, b, R, self, rec)
        return _FeedbackLinearFn.apply(x, W, b, R, self, rec)

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


#: torch kernels whose backward is exactly the plasticity gate (hardtanh's: 1[−1 < a < 1], Amit eq. 3)
_NATIVE = {"tanh": torch.tanh, "logistic": torch.sigmoid, "relu": torch.relu,
           "satlin": torch.nn.functional.hardtanh}


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
