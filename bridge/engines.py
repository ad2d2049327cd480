"""Network-level engines: the work of a rule that is not local to one layer's backward, done inside
the network's own forward/backward so that the plainest torch loop trains the rule correctly.

An engine is an ``nn.Module`` held by the network (so ``state_dict`` carries its generators and
counters) and found by the rule's *type* (:func:`register_engine`, :func:`make_engine`): a rule
that declares :class:`~plasticity.ActivityLearnedFeedback` or :class:`~plasticity.NetworkRule`
without a registered engine is an error, never a silent fallback to another rule.

Per forward pass the network opens a :class:`~bridge.layers.PassRecord`; the engine's hooks are

* ``on_loss(rec, y, target, loss)`` — called by :class:`bridge.losses.TeachingLoss` on the
  network's own output (node perturbation's noisy pass needs the loss of the noisy output);
* ``output_backward(rec, grad)`` — when the output layer's backward starts (``grad = −δ_L/n``);
* ``propagate(rec, l, grad)`` — the signal layer l sends down, or ``None`` for the rule's own;
* ``feedback_grad(rec, l, grad, x)`` — ``R_l.grad`` (``−feedback_lr · ΔR_l``);
* ``weight_grad_extra(rec, l)`` — a term added to ``W_l.grad`` (forward recirculation).

Metrics open passes in *capture* mode: engines then compute signals but learn nothing and draw
no random numbers, so measuring never changes the course of training.
"""

from __future__ import annotations

import torch
from torch import nn

from plasticity import ActivityLearnedFeedback, NetworkRule, Rule, forward
from plasticity.learned_feedback import NP, RF, ls_increment, np_target, rf_feedback_increments

__all__ = ["Engine", "ENGINES", "register_engine", "make_engine", "NPEngine", "RFEngine", "draw_normal"]

ENGINES: dict[type, type["Engine"]] = {}


def register_engine(rule_type: type):
    """Class decorator: ``cls`` is the engine of every rule that is an instance of ``rule_type``."""

    def deco(cls):
        if rule_type in ENGINES:
            raise ValueError(f"an engine for {rule_type.__name__} is already registered ({ENGINES[rule_type].__name__})")
        ENGINES[rule_type] = cls
        return cls

    return deco


def _load_engine_modules():
    from . import inversion  # noqa: F401  (registers the DI engine)


def make_engine(rule: Rule, context) -> "Engine | None":
    """The engine for ``rule`` (``None`` for layer-local rules); raises if one is needed but missing."""
    _load_engine_modules()
    for t in type(rule).__mro__:
        if t in ENGINES:
            return ENGINES[t](rule, context)
    if isinstance(rule, (ActivityLearnedFeedback, NetworkRule)):
        raise TypeError(f"rule {rule.name!r} ({type(rule).__name__}) needs a network-level engine and none is "
                        f"registered for its type; registered: {', '.join(t.__name__ for t in ENGINES) or 'none'}")
    return None


def draw_normal(gen: torch.Generator, shape, dtype, device, *, split_batch: bool = False) -> torch.Tensor:
    """Standard-normal draws from ``gen`` (a CPU generator, so streams agree across devices).

    ``split_batch``: under ``torch.distributed`` with world size w > 1 the first axis is this rank's
    share of a global batch; every rank draws the global (w·n, …) block and keeps its own rows, so
    the run equals one process on the global batch."""
    ws, rank = _world()
    if split_batch and ws > 1:
        n = shape[0]
        full = torch.randn((n * ws, *shape[1:]), generator=gen, dtype=dtype)
        return full[rank * n : (rank + 1) * n].to(device)
    return torch.randn(tuple(shape), generator=gen, dtype=dtype).to(device)


def _world():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class Engine(nn.Module):
    """Base class; subclasses override the hooks they need (all default to "nothing to add")."""

    #: the engine must see the loss of the network's output (``on_loss``)
    needs_loss = False

    def __init__(self, rule: Rule, context):
        super().__init__()
        self.rule = rule
        self.__dict__["context"] = context  # plain reference (not a submodule): the network owns it

    @property
    def layers(self):
        return self.context.layers

    def on_loss(self, rec, y, target, loss):
        pass

    def output_backward(self, rec, grad):
        pass

    def propagate(self, rec, l, grad):
        return None

    def feedback_grad(self, rec, l, grad, x):
        return None

    def weight_grad_extra(self, rec, l):
        return None

    def _detached(self):
        Ws = [lin.weight.detach() for lin in self.layers]
        bs = [None if lin.bias is None else lin.bias.detach() for lin in self.layers]
        Rs = [None if lin.feedback is None else lin.feedback.detach() for lin in self.layers]
        return Ws, bs, Rs


class _GeneratorEngine(Engine):
    """An engine with its own noise stream (seeded by ``rule.seed``), saved in ``state_dict``."""

    def __init__(self, rule, context):
        super().__init__(rule, context)
        self.generator = torch.Generator().manual_seed(int(rule.seed))

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def get_extra_state(self):
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state):
        self.generator.set_state(state["generator"])


_NO_LOSS = ("rule 'np' learns its feedback by comparing the loss of a noisy pass with the clean one, so it must "
            "see the loss: compute it with bridge.TeachingLoss on the network's own output, "
            "e.g. loss = TeachingLoss('ce')(model(x), y)")


@register_engine(NP)
class NPEngine(_GeneratorEngine):
    """Node perturbation (Lansdell 2019, §2–3): when the loss of a training pass is taken, one (or
    ``n_samples``) noisy passes ``h̃_l = g(a_l) + c_h ξ_l`` on every hidden layer (noise drawn here),
    their losses L̃; in the backward, ``λ̂_l = (L̃ − L) ξ_l / c_h`` and the least-squares step
    ``ΔR_l = ⟨(−λ̂_{l−1} − R_l δ_l) δ_lᵀ⟩ − ridge·R_l`` (layerwise; δ_L in direct mode,
    :func:`plasticity.learned_feedback.ls_increment`), given to the optimizer as
    ``R_l.grad = −feedback_lr · ΔR_l``."""

    needs_loss = True

    def draw(self, n, dtype, device, shapes=None):
        """The standard-normal draws of one loss evaluation: ``n_samples`` lists of one (n, d_l) tensor
        per hidden layer (the input of layers 2…L, flattened), in layer order.  ``shapes``: the input
        shapes the clean pass recorded (convolutional layers); default the layers' ``in_features``."""
        sizes = [int(torch.Size(shapes[l]).numel()) if shapes and l in shapes else lin.in_features
                 for l, lin in enumerate(self.layers) if l > 0]
        return [[draw_normal(self.generator, (n, d), dtype, device, split_batch=True) for d in sizes]
                for _ in range(self.rule.n_samples)]

    def on_loss(self, rec, y, target, loss):
        if rec.capture or not (torch.is_grad_enabled() and y.requires_grad):
            return
        with torch.no_grad():
            self._noisy_passes(rec, y, target, loss)

    def _noisy_passes(self, rec, y, target, loss):
        if rec.inputs is None:
            raise RuntimeError("rule 'np': the network's forward inputs were not recorded (call the network, "
                               "not its layers one by one)")
        if y.ndim != 2:
            raise ValueError(f"rule 'np' needs a (batch, outputs) network output, got shape {tuple(y.shape)}")
        per_example = loss.per_example
        L_clean = per_example(y.detach(), target)
        args, kwargs = rec.inputs
        samples = []
        for xis in self.draw(y.shape[0], y.dtype, y.device, rec.data.get("shapes")):
            self.context.pending_noise = {l + 1: self.rule.c_h * xi for l, xi in enumerate(xis)}
            try:
                noisy = self.context.network(*args, **kwargs)
            finally:
                self.context.pending_noise = None
            samples.append((per_example(noisy, target), xis))
        rec.data["np"] = (L_clean, samples)

    def feedback_grad(self, rec, l, grad, x):
        if l == 0:
            return None  # R_1 would need noise on the input: nothing learns it
        got = rec.data.get("np")
        if got is None:
            raise RuntimeError(_NO_LOSS)
        L_clean, samples = got
        n = grad.shape[0]
        regressor = -n * (rec.delta_out if self.rule.direct else grad.reshape(n, -1))
        R = self.layers[l].feedback.detach()
        total = None
        for L_noisy, xis in samples:
            t = np_target(L_noisy, L_clean, xis[l - 1], self.rule.c_h)
            inc = ls_increment(R, regressor, t, self.rule.ridge)
            total = inc if total is None else total + inc
        return -self.rule.feedback_lr * (total / len(samples))


@register_engine(RF)
class RFEngine(_GeneratorEngine):
    """Reciprocal feedback (Cameron et al.): once per training backward, one recirculation per layer
    driven by fresh noise ``x = σξ``, ``ΔR_l = ⟨(x − x̂) hᵀ⟩`` (and with forward recirculation
    ``ΔW_l = ⟨(h − ĥ) xᵀ⟩``), :func:`plasticity.learned_feedback.rf_feedback_increments`; given to the
    optimizer as ``R_l.grad = −feedback_lr · ΔR_l`` (and added to ``W_l.grad``)."""

    def draw(self, dtype, device):
        """Standard-normal (n_noise, d_{l−1}) draws for layers 2…L, ``None`` for layer 1."""
        return [None] + [draw_normal(self.generator, (self.rule.n_noise, lin.in_features), dtype, device)
                         for lin in self.layers[1:]]

    @torch.no_grad()
    def output_backward(self, rec, grad):
        if rec.capture:
            return
        Ws, _, Rs = self._detached()
        rec.data["rf"] = rf_feedback_increments(self.rule, Ws, Rs, self.draw(Ws[0].dtype, Ws[0].device))

    def _part(self, rec, k, l):
        got = rec.data.get("rf")
        if got is None:
            raise RuntimeError("rule 'rf': the recirculation runs when the output layer's backward starts; "
                               "this backward did not pass through the output layer")
        inc = got[k][l]
        return None if inc is None else -self.rule.feedback_lr * inc

    def feedback_grad(self, rec, l, grad, x):
        return self._part(rec, 0, l)

    def weight_grad_extra(self, rec, l):
        return self._part(rec, 1, l) if self.rule.forward_recirculation else None


def network_forward(layers, transfers, x):
    """The plasticity forward pass on the layers' detached weights (for engines that need a and h)."""
    Ws = [lin.weight.detach() for lin in layers]
    bs = [None if lin.bias is None else lin.bias.detach() for lin in layers]
    return forward(Ws, bs, x, transfers)
