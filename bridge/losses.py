"""Torch losses whose backward is exactly the plasticity teaching signal.

The forward returns the batch mean of ``loss.value``; the backward returns ``−teaching/n`` —
for the hinge this is eq. 6 exactly, thresholds included (torch's own subgradient of ``max``
would split ties 50/50).
"""

from __future__ import annotations

import torch

from plasticity import Loss, get_loss


class _LossFn(torch.autograd.Function):
    @staticmethod
    def forward(y, target, loss):
        return loss.value(y, target).mean()

    @staticmethod
    def setup_context(ctx, inputs, output):
        y, target, loss = inputs
        ctx.save_for_backward(y, target)
        ctx.loss = loss

    @staticmethod
    def backward(ctx, grad):
        y, target = ctx.saved_tensors
        return -grad * ctx.loss.teaching(y, target) / y.shape[0], None, None


class TeachingLoss(torch.nn.Module):
    """``TeachingLoss('hinge', mu=0.5)(y, labels)`` → scalar; backward = −δ_L / n."""

    def __init__(self, loss: Loss | str, **params):
        super().__init__()
        self.loss = get_loss(loss, **params)

    def forward(self, y, target):
        if self.loss.name == "ce" and target.ndim == 1:
            # torch's fused kernel has exactly the gradient (p − t)/n (checked in the tests)
            return torch.nn.functional.cross_entropy(y, target)
        return _LossFn.apply(y, target, self.loss)

    def per_example(self, y, target):
        return self.loss.value(y, target)
