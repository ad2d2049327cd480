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
    """``TeachingLoss('hinge', mu=0.5)(y, labels)`` → scalar; backward = −δ_L / n.

    Called on the output of a network whose rule must see the loss (node perturbation compares
    the loss of a noisy pass with this one), it hands the target to the network's engine.
    Targets are checked: integer class labels of shape (n,) (one-hot targets for ``mse``, as in
    Lillicrap's MNIST task), or float targets of the output's shape.
    """

    def __init__(self, loss: Loss | str, **params):
        super().__init__()
        self.loss = get_loss(loss, **params)

    def forward(self, y, target):
        self._check(y, target)
        rec = getattr(y, "_credit_pass", None)
        if rec is not None and rec.engine is not None and rec.engine.needs_loss:
            rec.engine.on_loss(rec, y, target, self)
        if self.loss.name == "ce" and target.ndim == 1:
            # torch's fused kernel has exactly the gradient (p − t)/n (checked in the tests)
            return torch.nn.functional.cross_entropy(y, target)
        return _LossFn.apply(y, target, self.loss)

    def _check(self, y, target):
        if not (torch.is_tensor(y) and torch.is_tensor(target)):
            raise TypeError("TeachingLoss: output and target must be tensors")
        if y.ndim != 2 or y.shape[0] == 0:
            raise ValueError(f"TeachingLoss: output must be a non-empty (batch, outputs) tensor, got shape {tuple(y.shape)}")
        if target.ndim == 1:
            if target.is_floating_point() or target.is_complex():
                raise ValueError(f"TeachingLoss({self.loss.name!r}): a 1-d target must hold integer class labels, "
                                 f"got {target.dtype}")
            if target.shape[0] != y.shape[0]:
                raise ValueError(f"TeachingLoss: {target.shape[0]} labels for {y.shape[0]} outputs")
        elif tuple(target.shape) != tuple(y.shape):
            raise ValueError(f"TeachingLoss({self.loss.name!r}): target shape {tuple(target.shape)} must equal the "
                             f"output's {tuple(y.shape)} (or be (batch,) class labels)")
        elif not target.is_floating_point():
            raise ValueError(f"TeachingLoss({self.loss.name!r}): a target of the output's shape must be float, "
                             f"got {target.dtype}")

    def per_example(self, y, target):
        return self.loss.value(y, target)
