"""Feed-forward networks built from :class:`FeedbackLinear` layers, and ``convert`` for existing models."""

from __future__ import annotations

import copy

import torch
from torch import nn

from plasticity import Rule, make_rule
from plasticity._validate import check_sizes

from .layers import Activation, BackwardContext, FeedbackLinear


def _wire(linears, rule: Rule) -> BackwardContext:
    """Share one backward context among the layers; mark the output layer."""
    ctx = BackwardContext()
    for i, lin in enumerate(linears):
        lin.context = ctx
        lin.is_output = i == len(linears) - 1
    return ctx


class FeedbackMLP(nn.Module):
    """A multilayer perceptron ``sizes = (d_0, …, d_L)`` trained by ``rule``.

    Hidden layers use ``activation``, the output ``output_activation`` (linear by default).
    ``weight_scale``/``feedback_scale`` give U(−s, s) initial entries (the papers' choice);
    ``sparsity``/``feedback_sparsity`` fix that fraction of every W/R at zero.
    ``input_feedback`` also gives the first layer an R (unused by learning; for mirroring circuits).
    """

    def __init__(
        self,
        sizes,
        rule: Rule | str = "bp",
        *,
        activation: str = "tanh",
        output_activation: str = "linear",
        bias: bool = True,
        weight_scale: float | None = None,
        feedback_scale: float | None = None,
        sparsity: float = 0.0,
        feedback_sparsity: float = 0.0,
        input_feedback: bool = False,
        generator: torch.Generator,
        dtype=None,
    ):
        super().__init__()
        self.sizes = check_sizes(sizes)
        self.rule = make_rule(rule)
        d_out = self.sizes[-1]
        layers, acts = [], []
        for l in range(1, len(self.sizes)):
            layers.append(
                FeedbackLinear(
                    self.sizes[l - 1],
                    self.sizes[l],
                    self.rule,
                    bias=bias,
                    feedback_dim=d_out if self.rule.direct else None,
                    weight_scale=weight_scale,
                    feedback_scale=feedback_scale,
                    sparsity=sparsity,
                    feedback_sparsity=feedback_sparsity,
                    with_feedback=input_feedback or l > 1,
                    generator=generator,
                    dtype=dtype,
                )
            )
            last = l == len(self.sizes) - 1
            acts.append(Activation(output_activation if last else activation, gated=self.rule.gated or last))
        self.linears = nn.ModuleList(layers)
        self.activations = nn.ModuleList(acts)
        self.context = _wire(self.linears, self.rule)

    @property
    def transfers(self):
        return [a.transfer for a in self.activations]

    def forward(self, x):
        for lin, act in zip(self.linears, self.activations):
            x = act(lin(x))
        return x

    def weights(self):
        return [lin.weight for lin in self.linears]

    def biases(self):
        return [lin.bias for lin in self.linears]

    def feedbacks(self):
        return [lin.feedback for lin in self.linears]


def convert(model: nn.Module, rule: Rule | str, *, generator: torch.Generator, feedback_scale=None,
            feedback_sparsity: float = 0.0, inplace: bool = False) -> nn.Module:
    """Replace every ``nn.Linear`` in ``model`` by a :class:`FeedbackLinear` following ``rule``.

    Weights and biases are copied; feedback matrices are drawn from ``generator``.  The last
    ``nn.Linear`` in module order is taken as the output layer.  Activations of the model are
    kept: their torch derivative is the gate (fine for every gated rule).
    """
    rule = make_rule(rule)
    if not rule.gated:
        raise ValueError(f"convert() keeps the model's own activations; rule {rule.name!r} needs FeedbackMLP")
    model = model if inplace else copy.deepcopy(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("convert(): the model has no nn.Linear layer")
    d_out = linears[-1].out_features
    replaced = {}
    for lin in linears:
        new = FeedbackLinear(
            lin.in_features, lin.out_features, rule, bias=lin.bias is not None,
            feedback_dim=d_out if rule.direct else None, feedback_scale=feedback_scale,
            feedback_sparsity=feedback_sparsity, generator=generator, dtype=lin.weight.dtype,
        ).to(lin.weight.device)
        with torch.no_grad():
            new.weight.copy_(lin.weight)
            if lin.bias is not None:
                new.bias.copy_(lin.bias)
        replaced[id(lin)] = new
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if id(child) in replaced:
                setattr(parent, name, replaced[id(child)])
    _wire([replaced[id(l)] for l in linears], rule)
    return model
