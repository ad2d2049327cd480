"""Feed-forward networks built from :class:`FeedbackLinear` layers, and ``convert`` for existing models."""

from __future__ import annotations

import copy
from collections import deque

import torch
from torch import nn

from plasticity import BP, Rule, make_rule
from plasticity._validate import check_sizes

from .engines import make_engine
from .layers import Activation, BackwardContext, FeedbackLayer, FeedbackLinear


def _wire(layers, output, engine_owner, rule: Rule, network) -> BackwardContext:
    """Share one backward context among ``layers`` (forward order), mark the output layer and attach
    the rule's engine (if it has one) as a submodule of ``engine_owner``."""
    ctx = BackwardContext(layers, network=network)
    for i, lin in enumerate(layers):
        lin.context = ctx
        lin.index = i
        lin.is_output = lin is output
    engine = make_engine(rule, ctx)
    if engine is not None:
        engine_owner.engine = engine
        ctx.engine = engine
    return ctx


class FeedbackMLP(nn.Module):
    """A multilayer perceptron ``sizes = (d_0, …, d_L)`` trained by ``rule``.

    Hidden layers use ``activation``, the output ``output_activation`` (linear by default).
    ``weight_scale``/``feedback_scale`` give U(−s, s) initial entries (the papers' choice);
    ``sparsity``/``feedback_sparsity`` fix that fraction of every W/R at zero.
    ``input_feedback`` also gives the first layer an R (unused by learning; for mirroring circuits).

    Every rule trains in a plain loop (``loss.backward(); opt.step()``); rules with network-level
    work hold it in ``self.engine`` (:mod:`bridge.engines`), whose state is in ``state_dict``.
    Node perturbation needs the loss taken with :class:`bridge.TeachingLoss` (it raises otherwise).
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
        self.context = _wire(list(self.linears), self.linears[-1], self, self.rule, self)

    @property
    def transfers(self):
        return [a.transfer for a in self.activations]

    def forward(self, x):
        if not torch.is_tensor(x):
            raise TypeError(f"FeedbackMLP: input must be a tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.sizes[0]:
            raise ValueError(f"FeedbackMLP: input has shape {tuple(x.shape)}; its last dimension must be "
                             f"d_0={self.sizes[0]}")
        rec = self.context.begin(((x,), {}))
        for lin, act in zip(self.linears, self.activations):
            x = act(lin(x))
        x._credit_pass = rec
        return x

    def weights(self):
        return [lin.weight for lin in self.linears]

    def biases(self):
        return [lin.bias for lin in self.linears]

    def feedbacks(self):
        return [lin.feedback for lin in self.linears]

    @property
    def di_state(self):
        """The dynamic-inversion engine (its ``stability`` and ``events`` records); DI networks only."""
        from .inversion import DIEngine

        eng = self._modules.get("engine")
        if not isinstance(eng, DIEngine):
            raise AttributeError(f"di_state: this network trains with rule {self.rule.name!r}, not 'di'")
        return eng


class _OpenPass:
    """Forward pre-hook of a converted model: opens a pass record with the forward's inputs."""

    def __init__(self, context):
        self.context = context

    def __call__(self, module, args, kwargs):
        self.context.begin((args, kwargs))


class _MarkOutput:
    """Forward hook of a converted model: ties its output tensor to the open pass (for the loss)."""

    def __init__(self, context):
        self.context = context

    def __call__(self, module, args, kwargs, output):
        if torch.is_tensor(output):
            output._credit_pass = self.context.current


def _conv_ok(m, rule) -> bool:
    from .conv import conv_form

    try:
        conv_form(rule)
    except ValueError:
        return False
    return (type(m) is nn.Conv2d and m.groups == 1 and tuple(m.dilation) == (1, 1) and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


def _linear_candidates(model, rule=None):
    """``(name, module)`` of every ``nn.Linear`` that its parent calls as a module (not the
    ``out_proj`` of ``nn.MultiheadAttention``, whose weights the attention reads directly), and of
    every plain ``nn.Conv2d`` when the rule has a convolutional form."""
    mha = [name for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    out = []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in mha):
            continue
        if isinstance(m, (nn.Linear, FeedbackLayer)) or (rule is not None and _conv_ok(m, rule)):
            out.append((name, m))
    return out


def _trace(model, args, kwargs, linears):
    """Run ``model`` once: the call order of ``linears``, whether each one's input depends on a
    parameter, and which one produces the model's output (nearest to it in the autograd graph)."""
    order, needs_input, node_of, shapes = [], {}, {}, {}
    handles = []
    for name, m in linears:
        def hook(mod, inp, out, name=name):
            if name in needs_input:
                raise ValueError(f"convert(): nn.Linear {name!r} is called more than once per forward "
                                 "(shared weights are not supported)")
            order.append(name)
            needs_input[name] = bool(inp and torch.is_tensor(inp[0]) and inp[0].requires_grad)
            shapes[name] = tuple(inp[0].shape[1:]) if inp and torch.is_tensor(inp[0]) else None
            if out.grad_fn is not None:
                node_of[out.grad_fn] = name
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            out = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    if not torch.is_tensor(out):
        raise ValueError(f"convert(): the model must return a tensor, got {type(out).__name__}")
    output = None
    seen, queue = set(), deque([out.grad_fn])
    while queue and output is None:
        node = queue.popleft()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node in node_of:
            output = node_of[node]
            break
        queue.extend(nf for nf, _ in node.next_functions)
    if output is None:
        raise ValueError("convert(): the model's output does not depend on any nn.Linear")
    return order, needs_input, output, shapes


def convert(model: nn.Module, rule: Rule | str, *, example_input, generator: torch.Generator, feedback_scale=None,
            feedback_sparsity: float = 0.0, inplace: bool = False, allow_backprop=()) -> nn.Module:
    """Replace every ``nn.Linear`` in ``model`` by a :class:`FeedbackLinear` following ``rule``, and
    every plain ``nn.Conv2d`` (no groups, no dilation) by a :class:`bridge.conv.FeedbackConv2d` when the
    rule has a convolutional form (bp, fa, frfb, urfb, dfa).

    ``example_input`` (a tensor, or a tuple of positional arguments) is run through the model once:
    it materialises lazy modules and shows the call order of the layers, which layer produces the
    model's output (the output layer of DFA and of the engines), and which layers' inputs depend on
    earlier layers (only those get a feedback matrix: the others' would carry signals nothing reads).
    Weights and biases are copied; feedback matrices are drawn from ``generator``.  The model's own
    activations are kept: their torch derivative is the gate (right for every gated rule).

    Every other module with learnable parameters (other convolutions, norms, embeddings, attention, RNNs)
    would stay on backprop; unless the rule is ``bp`` that is an error naming them, unless they are
    listed in ``allow_backprop`` (module types or qualified names; ``True`` allows all).
    """
    rule = make_rule(rule)
    if not rule.gated:
        raise ValueError(f"convert() keeps the model's own activations; rule {rule.name!r} needs FeedbackMLP")
    if not isinstance(generator, torch.Generator):
        raise TypeError("convert(): generator must be a torch.Generator (randomness is always explicit)")
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    model = model if inplace else copy.deepcopy(model)
    with torch.no_grad():
        model(*args)  # materialises lazy modules
    linears = _linear_candidates(model, rule)
    if not linears:
        raise ValueError("convert(): the model has no nn.Linear (or nn.Conv2d) layer")
    lin_names = {n for n, _ in linears}
    if not isinstance(rule, BP) and allow_backprop is not True:
        allowed = tuple(a for a in allow_backprop if isinstance(a, type))
        allowed_names = {a for a in allow_backprop if isinstance(a, str)}
        left = [name or type(m).__name__ for name, m in model.named_modules()
                if name not in lin_names and any(True for _ in m.parameters(recurse=False))
                and not isinstance(m, allowed) and name not in allowed_names]
        if left:
            raise ValueError(f"convert(): {', '.join(repr(n) for n in left)} ha{'ve' if len(left) > 1 else 's'} learnable "
                             f"parameters that rule {rule.name!r} would leave on backprop; pass "
                             "allow_backprop=[module types or names] (or True) to keep them on backprop explicitly")
    order, needs_input, output, shapes = _trace(model, args, {}, linears)
    by_name = dict(linears)
    if not isinstance(by_name[output], (nn.Linear, FeedbackLinear)):
        raise ValueError("convert(): the model's output must come from an nn.Linear layer")
    d_out = by_name[output].out_features
    new = {}
    for name in order:
        lin = by_name[name]
        if isinstance(lin, FeedbackLayer):  # built by the caller: kept, and wired with the others
            if type(lin.rule) is not type(rule):
                raise ValueError(f"convert(): layer {name!r} follows rule {lin.rule.name!r}, not {rule.name!r}")
            new[name] = lin
            continue
        if isinstance(lin, nn.Conv2d):
            from .conv import FeedbackConv2d

            fl = FeedbackConv2d(
                lin.in_channels, lin.out_channels, lin.kernel_size, rule, stride=lin.stride, padding=lin.padding,
                bias=lin.bias is not None, feedback_scale=feedback_scale, feedback_sparsity=feedback_sparsity,
                with_feedback=needs_input[name], feedback_dim=d_out if rule.direct else None,
                in_size=shapes[name][1:] if rule.direct else None, generator=generator, dtype=lin.weight.dtype,
            ).to(lin.weight.device)
            with torch.no_grad():
                fl.weight.copy_(lin.weight)
                if lin.bias is not None:
                    fl.bias.copy_(lin.bias)
            new[name] = fl
            continue
        fl = FeedbackLinear(
            lin.in_features, lin.out_features, rule, bias=lin.bias is not None,
            feedback_dim=d_out if rule.direct else None, feedback_scale=feedback_scale,
            feedback_sparsity=feedback_sparsity, with_feedback=needs_input[name], generator=generator,
            dtype=lin.weight.dtype,
        ).to(lin.weight.device)
        with torch.no_grad():
            fl.weight.copy_(lin.weight)
            if lin.bias is not None:
                fl.bias.copy_(lin.bias)
        new[name] = fl
    unused = [n for n in lin_names if n not in new]
    if unused:
        raise ValueError(f"convert(): nn.Linear {', '.join(map(repr, sorted(unused)))} never ran on example_input")
    for parent_name, parent in model.named_modules():
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if full in new and new[full] is not child:
                setattr(parent, child_name, new[full])
    layers = [new[n] for n in order]
    ctx = _wire(layers, new[output], new[output], rule, model)
    model.register_forward_pre_hook(_OpenPass(ctx), with_kwargs=True)
    model.register_forward_hook(_MarkOutput(ctx), with_kwargs=True)
    return model


def feedback_layers(model: nn.Module) -> list[FeedbackLinear]:
    """The :class:`FeedbackLinear` layers of a network or converted model, in forward order."""
    for m in model.modules():
        if isinstance(m, FeedbackLayer):
            return list(m.context.layers)
    raise ValueError(f"{type(model).__name__} has no feedback layer (build a FeedbackMLP or use convert())")
