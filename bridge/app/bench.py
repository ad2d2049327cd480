"""``credit bench`` core rows: one SGD step of each rule against plain torch backprop.

Same MLP 784-1000-10 (tanh, softmax cross-entropy), batch 128, float32, on ``--device`` (CPU by default).  Every
implementation is timed in the same process, interleaved step by step (round-robin), so that
slow drifts of the machine hit all of them alike; the ratio is the median step time of the rule
over the median step time of plain torch (``nn.Linear`` + ``F.cross_entropy`` + ``SGD``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator

import torch
from torch import nn

from ..losses import TeachingLoss
from ..network import FeedbackMLP
from .registry import register_bench

SIZES = (784, 1000, 10)
BATCH = 128


def _torch_step(model, loss_fn):
    """One plain torch SGD step of ``model`` with ``loss_fn`` (the baseline of every ratio)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def _plain_step_fn(gen, device):
    model = nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.Tanh(), nn.Linear(SIZES[1], SIZES[2])).to(device)
    return _torch_step(model, nn.functional.cross_entropy)


def _rule_step_fn(rule, gen, device):
    """The step ``credit train`` takes (:func:`bridge.train.training_step`), for ``rule``."""
    from ..train import training_step

    model = FeedbackMLP(SIZES, rule, activation="tanh", generator=gen).to(device)
    loss = TeachingLoss("ce")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return lambda x, y: training_step(model, loss, opt, x, y)


#: every rule's step in the rules group (DI with its steady-state solver: the Euler form is in the di group)
RULE_ROWS = {"bp": "bp", "fa": "fa", "frfb": "frfb", "dfa": "dfa", "urfb": "urfb", "pbp": "pbp", "ndi": "ndi",
             "np": "np", "rf": "rf", "rf-exact": "rf-exact", "di-steady": ("di", {"method": "steady"})}


def time_side_by_side(fns: dict, make_batch, repeats: int, warmup: int = 3, device="cpu",
                      progress: bool = False) -> dict:
    """Median seconds per call of each fn, timed round-robin in one process (CUDA synchronised);
    ``progress`` shows a bar over the rounds (every fn once per round) on stderr."""
    from tqdm.auto import tqdm

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = {k: [] for k in fns}
    batches = [make_batch(i) for i in range(repeats + warmup)]
    rounds = tqdm(batches, desc=f"  timing {len(fns)} steps round-robin", unit="round", leave=False,
                  disable=not progress, dynamic_ncols=True, file=sys.stderr)
    for i, (x, y) in enumerate(rounds):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn(x, y)
            sync()
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}


@register_bench("rules")
def bench_rules(opts) -> Iterator[dict]:
    from plasticity import RULES

    gen = torch.Generator().manual_seed(opts.seed)
    data_gen = torch.Generator().manual_seed(opts.seed + 1)
    from plasticity import make_rule

    names = [r for r, spec in RULE_ROWS.items() if (spec if isinstance(spec, str) else spec[0]) in RULES]
    dev = opts.device
    fns = {"torch-bp": _plain_step_fn(gen, dev)}
    for r in names:
        spec = RULE_ROWS[r]
        rule = make_rule(spec) if isinstance(spec, str) else make_rule(spec[0], **spec[1])
        fns[r] = _rule_step_fn(rule, gen, dev)

    def make_batch(i):
        x = torch.randn(BATCH, SIZES[0], generator=data_gen)
        return x.to(dev), torch.randint(0, SIZES[-1], (BATCH,), generator=data_gen).to(dev)

    med = time_side_by_side(fns, make_batch, repeats=5 if opts.quick else opts.repeats, device=dev,
                             progress=opts.progress)
    base = med["torch-bp"]
    th = f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}" if dev == "cpu" else dev
    rows = [{"name": f"step torch-bp 784-1000-10 b128 ({th})", "value": base * 1e3, "unit": "ms", "ratio": 1.0}]
    rows += [{"name": f"step {r} 784-1000-10 b128 ({th})", "value": med[r] * 1e3, "unit": "ms",
              "ratio": med[r] / base} for r in names]
    return rows


@register_bench("conv")
def bench_conv(opts) -> Iterator[dict]:
    """Amit's simpnet (3×32×32 → Conv 32 5×5 → Maxpool 3 → Full 500 → 10; batch 128, float32, no
    dropout): one step of FA, URFB and BP-through-the-engine against the same net built from
    ``nn.Conv2d``/``nn.Linear`` with torch's own backprop; and the untied (locally connected) net's
    step and its memory against the conv net's."""
    from ..archs import build_arch
    from ..conv import LocallyConnected2d
    from ..train import training_step

    dev = opts.device
    data_gen = torch.Generator().manual_seed(opts.seed + 1)
    gen = torch.Generator().manual_seed(opts.seed)
    batch = 32 if opts.quick else 128

    def plain():
        from ..archs import AmitMaxPool

        m = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.Hardtanh(), AmitMaxPool(), nn.Flatten(),
                          nn.Linear(32 * 16 * 16, 500), nn.Hardtanh(), nn.Linear(500, 10)).to(dev)
        return _torch_step(m, nn.functional.multi_margin_loss)

    def engine(rule, untied=False):
        m = build_arch("amit-simpnet", rule, 10, generator=gen, untied=untied, dropout=False).to(dev)
        loss = TeachingLoss("hinge")
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        return (lambda x, y: training_step(m, loss, opt, x, y)), m

    fns = {"torch-bp": plain()}
    nets = {}
    for r in ("bp", "fa", "urfb"):
        fns[r], nets[r] = engine(r)
    fns["urfb-untied"], nets["urfb-untied"] = engine("urfb", untied=True)

    def make_batch(i):
        x = torch.rand(batch, 3, 32, 32, generator=data_gen)
        return x.to(dev), torch.randint(0, 10, (batch,), generator=data_gen).to(dev)

    med = time_side_by_side(fns, make_batch, repeats=3 if opts.quick else max(5, opts.repeats // 3), device=dev,
                             progress=opts.progress)
    base = med["torch-bp"]
    th = f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}" if dev == "cpu" else dev
    rows = [{"name": f"step simpnet torch-bp b{batch} ({th})", "value": base * 1e3, "unit": "ms", "ratio": 1.0}]
    rows += [{"name": f"step simpnet {r} b{batch} ({th})", "value": med[r] * 1e3, "unit": "ms", "ratio": med[r] / base}
             for r in ("bp", "fa", "urfb", "urfb-untied")]
    lc = [m for m in nets["urfb-untied"].modules() if isinstance(m, LocallyConnected2d)][0]
    mem = lc.memory_bytes(batch)
    conv_w = nets["urfb"][0].weight
    rows.append({"name": f"memory untied conv layer (W + R + unfolded input, b{batch})",
                 "value": sum(mem.values()) / 2**20, "unit": "MiB",
                 "ratio": sum(mem.values()) / (2 * conv_w.numel() * conv_w.element_size()
                                               + batch * 3 * 32 * 32 * conv_w.element_size())})
    return rows


@register_bench("layered")
def bench_layered(opts) -> Iterator[dict]:
    """Amit's layered learning circuit (:class:`circuits.amit.LayeredCircuit`, 784-1000-10, URFB,
    cython) per online example against its numpy twin :func:`plasticity.amit.train_online` (the same
    Fig. 15 schedule as matrix math, one BLAS thread), on the same random MNIST-like inputs from the
    same start; and, apart, the first cython compilation of the circuit.

    Per-example times exclude building and compiling: the circuit first learns one warm-up chunk
    (256 examples, its ``TimedArray`` capacity: the compiled code is then loaded or in memory), the
    twin a few examples; then both learn the same n examples (n = 256, 64 with ``--quick``), median
    of 3 rounds (1 with ``--quick``).  Compilation: without ``--quick`` the circuit is built and run
    for one example once with Brian2's cython cache pointed at a fresh temporary folder (and its
    in-process module cache emptied), so every code object is compiled from scratch; the row gives
    that wall time, and the build + first run with the ordinary cache for comparison.  The final W
    and R of circuit and twin are compared (max relative difference in the detail).
    """
    import gc
    import os
    import tempfile

    import numpy as np
    from brian2 import prefs

    from circuits._brian import quiet_brian
    from circuits.amit import LayeredCircuit
    from plasticity import amit as PA

    from .registry import max_rel_diff

    quiet_brian()
    sizes, eta, chunk = (784, 1000, 10), 0.01, 256
    n = 64 if opts.quick else 256
    rounds = 1 if opts.quick else 3
    rng = np.random.default_rng(opts.seed)
    total = chunk + rounds * n
    X = (rng.uniform(0.0, 1.0, (total, sizes[0])) < 0.19) * rng.uniform(0.5, 1.0, (total, sizes[0]))  # ~MNIST ink
    labels = rng.integers(0, sizes[-1], total)
    W0, R0, _, _ = PA.random_init(sizes, np.random.default_rng(opts.seed + 1))

    def build():
        return LayeredCircuit(sizes, W0, R0, eta, 1.0, 1.0, target="cython", chunk=chunk)

    if not opts.quick:
        from brian2.codegen.runtime.cython_rt.extension_manager import cython_extension_manager

        old_dir = prefs.codegen.runtime.cython.cache_dir
        old_mem = dict(cython_extension_manager._code_cache)
        with tempfile.TemporaryDirectory(prefix="brian_cache_") as tmp:
            prefs.codegen.runtime.cython.cache_dir = tmp
            cython_extension_manager._code_cache.clear()
            try:
                t0 = time.perf_counter()
                c = build()
                c.train(X[:1], labels[:1])
                compile_s = time.perf_counter() - t0
                n_modules = len([f for f in os.listdir(tmp) if f.endswith((".so", ".pyd"))])
            finally:
                prefs.codegen.runtime.cython.cache_dir = old_dir
                cython_extension_manager._code_cache.clear()
                cython_extension_manager._code_cache.update(old_mem)
                del c
                gc.collect()
        yield {"name": "layered circuit 784-1000-10: first cython compile (fresh cache), build + 1 example",
               "value": compile_s, "unit": "s", "ratio": None,
               "detail": f"{n_modules} compiled modules in a fresh temporary cache folder"}
    t0 = time.perf_counter()
    circ = build()
    circ.train(X[:1], labels[:1])
    cached_s = time.perf_counter() - t0
    yield {"name": "layered circuit 784-1000-10: build + 1 example with the cython cache", "value": cached_s,
           "unit": "s", "ratio": None,
           "detail": "the ordinary cache (warm when this machine has compiled the circuit before)"}
    circ.train(X[1:chunk], labels[1:chunk])
    W, R = [w.copy() for w in W0], [r.copy() for r in R0]
    try:
        from threadpoolctl import threadpool_limits

        limit, blas = threadpool_limits(1), "1 BLAS thread"
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        limit, blas = contextlib.nullcontext(), "BLAS threads as configured"
    bs, ts = [], []
    with limit:
        W, R, _, _ = PA.train_online(W, R, X[:chunk], labels[:chunk], eta=eta)
        for r in range(rounds):
            a, b = chunk + r * n, chunk + (r + 1) * n
            t1 = time.perf_counter()
            circ.train(X[a:b], labels[a:b])
            t2 = time.perf_counter()
            W, R, _, _ = PA.train_online(W, R, X[a:b], labels[a:b], eta=eta)
            t3 = time.perf_counter()
            bs.append((t2 - t1) / n)
            ts.append((t3 - t2) / n)
    Wc, Rc = circ.weights()
    diff = max(max(max_rel_diff(a, b) for a, b in zip(Wc, W)), max(max_rel_diff(a, b) for a, b in zip(Rc, R)))
    b, t = statistics.median(bs), statistics.median(ts)
    steps = f"median of {rounds}×{n} examples after a {chunk}-example warm-up"
    yield {"name": "layered circuit 784-1000-10 URFB per example: brian2[cython]", "value": b * 1e3,
           "unit": "ms", "ratio": b / t,
           "detail": f"{steps}; Network.run calls of ≤ {chunk} examples; final W, R vs twin max rel diff {diff:.1e}"}
    yield {"name": f"layered 784-1000-10 URFB per example: numpy twin plasticity.amit.train_online ({blas})",
           "value": t * 1e3, "unit": "ms", "ratio": 1.0, "detail": steps}
