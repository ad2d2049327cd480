"""The papers' convolutional networks, built from feedback layers and wired for any conv-form rule.

Amit 2021 §4 (CIFAR-10/100; saturated linearity ``σ(x) = min(max(x, −1), 1)`` after every hidden
layer, multi-class hinge or softmax output, weights Glorot-uniform ``U(−b_l, b_l)``,
``b_l = √(6/(fan_in + fan_out))``)::

    amit-simpnet:    Conv 32 5x5; Maxpool 3; Drop .8; Full 500; Drop .3; Output
    amit-deepnet:    Conv 32 5x5; Maxpool 3; Conv 32 3x3; Conv 32 3x3; Maxpool 3; Drop .8;
                     Conv 32 3x3; Conv 32 3x3; Maxpool 3; Drop .3; Full 500; Output
    amit-deepernet:  conv 16 3x3; conv 16 3x3; SUM; conv 32 3x3; conv 32 3x3; SUM; maxpool 3; drop .5;
                     conv 64 3x3; conv 64 3x3; SUM; maxpool 3; conv 128 3x3; conv 128 3x3; SUM;
                     maxpool 3; drop .8; full 500; output
    amit-deepnet-s:  conv 16 3x3; conv 16 3x3; SUM; maxpool 3, stride 3; drop .5; conv 64 3x3;
                     conv 64 3x3; SUM; maxpool 2, stride 2; conv 64 2x2; conv 64 2x2; SUM;
                     maxpool 2, stride 2; drop .5; full 500; output

* Convolutions keep the image size ("32 output arrays of dimension 32x32"): zero padding k//2 (for
  the even 2x2 kernels one row and column after the image).
* ``Maxpool 3`` (:class:`AmitMaxPool`): the maximum over the 3x3 window centred at each pixel,
  **padding with 0's outside the grid** (not −∞), then every second pixel: 32 → 16.  ``maxpool k,
  stride s`` likewise with window k, stride s.
* ``Drop p``: "a random subset of p of the pixels in each array are set to 0" — elementwise
  dropout of rate p (``nn.Dropout(p)``: survivors scaled by 1/(1 − p) so that test-time activity
  matches; the paper does not say how it rescales).
* ``SUM`` adds the outputs of the two convolutions before it (no trainable parameters).
* ``untied=True`` turns every convolution into a :class:`~bridge.conv.LocallyConnected2d` (§4.1).

Lansdell 2019 §3.3 (``lansdell-cnn``): Conv(3x3, 32), MaxPool(3x3, 2x2), Conv(5x5, 128),
MaxPool(3x3, 2x2), Conv(5x5, 256), MaxPool(3x3, 2x2), FC 2048, FC 2048, Softmax(10) — tanh units
(its Assumption A2 excludes ReLU), 'same' convolutions, pools with padding 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plasticity import Rule, make_rule

from .conv import FeedbackConv2d, LocallyConnected2d, conv_form
from .layers import Activation, FeedbackLinear
from .network import convert

ARCHS = ("amit-simpnet", "amit-deepnet", "amit-deepernet", "amit-deepnet-s", "lansdell-cnn")


class AmitMaxPool(nn.Module):
    """Max over the k×k window centred at each pixel with zero padding outside the grid, stride s."""

    def __init__(self, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = int(kernel), int(stride)

    def forward(self, x):
        p = self.kernel // 2
        return F.max_pool2d(F.pad(x, (p, p, p, p), value=0.0), self.kernel, self.stride)

    def extra_repr(self):
        return f"kernel={self.kernel}, stride={self.stride}, zero padding"


class _Sum(nn.Module):
    """``SUM``: the outputs of a pair of convolutions added (Amit's residual pairs)."""

    def __init__(self, first: nn.Module, act1: nn.Module, second: nn.Module, act2: nn.Module):
        super().__init__()
        self.first, self.act1, self.second, self.act2 = first, act1, second, act2

    def forward(self, x):
        a = self.act1(self.first(x))
        return a + self.act2(self.second(a))


class _EvenPad(nn.Module):
    def forward(self, x):
        return F.pad(x, (0, 1, 0, 1))


def glorot_scale(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


class _Builder:
    def __init__(self, rule, *, untied, sparsity, feedback_sparsity, generator, dtype, activation, image, glorot,
                 n_classes, feedback_scale=None):
        self.feedback_scale = feedback_scale
        self.rule, self.untied = rule, untied
        self.direct = conv_form(rule) == "direct"
        self.n_classes = n_classes
        self.sparsity, self.feedback_sparsity = sparsity, feedback_sparsity
        self.gen, self.dtype, self.activation = generator, dtype, activation
        self.c, self.h, self.w = image
        self.first = True
        self.glorot = glorot

    def act(self):
        return Activation(self.activation)

    def conv(self, out, k):
        even = k % 2 == 0
        pad = 0 if even else k // 2
        ws = glorot_scale(self.c * k * k, out * k * k) if self.glorot else None
        kw = dict(weight_scale=ws, feedback_scale=self.feedback_scale, sparsity=self.sparsity,
                  feedback_sparsity=self.feedback_sparsity,
                  with_feedback=not self.first, generator=self.gen, dtype=self.dtype)
        h, w = self.h + (1 if even else 0), self.w + (1 if even else 0)
        if self.direct:  # R carries the output error straight to this layer's input (DFA, Lansdell's NP)
            kw["feedback_dim"] = self.n_classes
        if self.untied:
            layer = LocallyConnected2d(self.c, out, k, (h, w), self.rule, padding=pad, **kw)
        else:
            layer = FeedbackConv2d(self.c, out, k, self.rule, padding=pad, in_size=(h, w) if self.direct else None, **kw)
        self.first = False
        self.c = out
        return nn.Sequential(_EvenPad(), layer) if even else layer

    def pool(self, k=3, s=2):
        p = k // 2
        self.h = (self.h + 2 * p - k) // s + 1
        self.w = (self.w + 2 * p - k) // s + 1
        return AmitMaxPool(k, s)

    def full(self, n_in, n_out, last=False):
        ws = glorot_scale(n_in, n_out) if self.glorot else None
        layer = FeedbackLinear(n_in, n_out, self.rule, weight_scale=ws, feedback_scale=self.feedback_scale,
                               sparsity=self.sparsity,
                               feedback_sparsity=self.feedback_sparsity, with_feedback=not self.first,
                               feedback_dim=self.n_classes if self.direct else None, generator=self.gen,
                               dtype=self.dtype)
        self.first = False
        return layer

    def flat(self):
        return self.c * self.h * self.w


def build_arch(name: str, rule: Rule | str, n_classes: int, *, generator: torch.Generator, untied: bool = False,
               sparsity: float = 0.0, feedback_sparsity: float = 0.0, image=(3, 32, 32), dtype=None,
               dropout: bool = True, feedback_scale: float | None = None) -> nn.Module:
    """One of :data:`ARCHS` for ``rule`` (bp, fa, frfb, urfb, dfa, or np in direct mode — Lansdell's
    CNN learns its direct feedback by node perturbation), wired like :func:`bridge.convert`.
    ``dropout=False`` leaves out the dropout layers (for exact comparisons).  ``feedback_scale``: R ~
    U(±scale) in every layer (default: the layer's own weight scale for kernels, 1/√d_L for direct
    feedback)."""
    if name not in ARCHS:
        raise ValueError(f"unknown arch {name!r}; valid: {', '.join(ARCHS)}")
    rule = make_rule(rule)
    conv_form(rule)  # a clear error for rules without a convolutional form
    if int(n_classes) != n_classes or n_classes < 2:
        raise ValueError(f"n_classes must be an integer ≥ 2, got {n_classes!r}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    amit = name.startswith("amit")
    b = _Builder(rule, untied=untied, sparsity=sparsity, feedback_sparsity=feedback_sparsity, generator=generator,
                 dtype=dtype, activation="satlin" if amit else "tanh", image=tuple(image), glorot=amit,
                 n_classes=int(n_classes), feedback_scale=feedback_scale)
    drop = (lambda p: nn.Dropout(p)) if dropout else (lambda p: nn.Identity())
    L: list[nn.Module] = []
    if name == "amit-simpnet":
        L += [b.conv(32, 5), b.act(), b.pool(), drop(0.8), nn.Flatten()]
        n = b.flat()
        L += [b.full(n, 500), b.act(), drop(0.3), b.full(500, n_classes, last=True)]
    elif name == "amit-deepnet":
        L += [b.conv(32, 5), b.act(), b.pool(), b.conv(32, 3), b.act(), b.conv(32, 3), b.act(), b.pool(), drop(0.8),
              b.conv(32, 3), b.act(), b.conv(32, 3), b.act(), b.pool(), drop(0.3), nn.Flatten()]
        n = b.flat()
        L += [b.full(n, 500), b.act(), b.full(500, n_classes, last=True)]
    elif name == "amit-deepernet":
        def pair(c):
            return _Sum(b.conv(c, 3), b.act(), b.conv(c, 3), b.act())
        L += [pair(16), pair(32), b.pool(), drop(0.5), pair(64), b.pool(), pair(128), b.pool(), drop(0.8),
              nn.Flatten()]
        n = b.flat()
        L += [b.full(n, 500), b.act(), b.full(500, n_classes, last=True)]
    elif name == "amit-deepnet-s":
        def pair(c, k=3):
            return _Sum(b.conv(c, k), b.act(), b.conv(c, k), b.act())
        L += [pair(16), b.pool(3, 3), drop(0.5), pair(64), b.pool(2, 2), pair(64, 2), b.pool(2, 2), drop(0.5),
              nn.Flatten()]
        n = b.flat()
        L += [b.full(n, 500), b.act(), b.full(500, n_classes, last=True)]
    else:  # lansdell-cnn
        L += [b.conv(32, 3), b.act(), b.pool(3, 2), b.conv(128, 5), b.act(), b.pool(3, 2), b.conv(256, 5), b.act(),
              b.pool(3, 2), nn.Flatten()]
        n = b.flat()
        L += [b.full(n, 2048), b.act(), b.full(2048, 2048), b.act(), b.full(2048, n_classes, last=True)]
    model = nn.Sequential(*L)
    example = torch.zeros((2, *image), dtype=dtype)
    return convert(model, rule, example_input=example, generator=generator, inplace=True)
