"""The torch engine as a torch library: every rule in a plain loop, all state in ``state_dict``,
checkpoint and resume, ``convert`` on user models, metrics on converted models, bad input.

All comparisons in float64; "identical" means bit-identical (``torch.equal``) where both sides run
the same arithmetic in the same order, and a tolerance written next to the assertion otherwise.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import plasticity as P
from bridge import FeedbackMLP, TeachingLoss, convert
from bridge.app.cli import main
from bridge.app.runs import TrainConfig, build_model, load_run, run_experiment
from bridge.data import load_dataset
from bridge.metrics import feedback_alignment, signal_angles
from bridge.network import feedback_layers
from bridge.train import training_step

ALL_RULES = ["bp", "fa", "frfb", "dfa", "urfb", "pbp", "ndi", "di", "np", "rf", "rf-exact"]
#: small and fast settings for rules whose defaults are slow at this size
RULE_PARAMS = {"di": {"method": "steady"}, "np": {"c_h": 0.05}, "rf": {"n_noise": 8}}
SIZES = (64, 20, 15, 10)


def _cfg(rule, **kw):
    base = dict(task="digits", rule=rule, sizes=SIZES, epochs=1, n_train=400, n_test=64, batch_size=8, lr=0.05,
                dtype="float64", quiet=True, seed=3, probe_size=32, rule_params=dict(RULE_PARAMS.get(rule, {})))
    base.update(kw)
    return TrainConfig(**base)


def _data(cfg):
    return load_dataset("digits", seed=cfg.seed, n_train=cfg.n_train, n_test=cfg.n_test)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def _plain_loop(cfg, data, steps=None, model=None, opt=None, start_epoch=0):
    """The README's loop, written here independently of ``bridge.train``: SGD, the same seeded
    batch order (one numpy permutation per epoch)."""
    cfg = cfg.resolved()
    model = build_model(cfg, data.n_in, data.n_out) if model is None else model
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr) if opt is None else opt
    crit = TeachingLoss(cfg.loss)
    x, y = torch.as_tensor(data.x_train, dtype=torch.float64), torch.as_tensor(data.y_train)
    rng = np.random.default_rng(cfg.seed)
    done = 0
    for _ in range(cfg.epochs):
        order = torch.as_tensor(rng.permutation(len(x)))
        for k in range(math.ceil(len(x) / cfg.batch_size)):
            idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
            opt.zero_grad()
            crit(model(x[idx]), y[idx]).backward()
            opt.step()
            done += 1
            if steps is not None and done == steps:
                return model, opt
    return model, opt


#: the same code paths as rules kept in the default run (frfb = fa's, rf-exact = pbp's operator family),
#: or slow (di's solver): their copies of the longer tests run with -m slow
_SLOW_TWINS = {"frfb", "rf-exact", "di"}
_PARAMS = [pytest.param(r, marks=pytest.mark.slow) if r in _SLOW_TWINS else r for r in ALL_RULES]


@pytest.mark.parametrize("rule", _PARAMS)
def test_plain_loop_equals_credit_train(rule):
    """50 steps: ``run_experiment`` (evaluations and angle probes included) and a hand-written
    ``backward(); step()`` loop end with bit-identical weights and feedback — so the probes learn
    nothing and draw no noise, and nothing happens outside forward/backward."""
    cfg = _cfg(rule)
    data = _data(cfg)
    s = run_experiment(cfg, data=data, write=False)
    assert s["history"][-1]["step"] == 50
    ref, _ = _plain_loop(cfg, data)
    a, b = _state(s["model"]), _state(ref)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    W0 = build_model(cfg.resolved(), 64, 10).linears[0].weight
    assert not torch.equal(ref.linears[0].weight, W0)  # it did learn


@pytest.mark.parametrize("rule", ["urfb", "np", "rf", pytest.param("di", marks=pytest.mark.slow)])
def test_state_dict_continues_identically(rule):
    """25 steps, ``state_dict`` → a fresh model built from another seed → 25 more steps equals 50
    uninterrupted steps bit for bit (generators, DI's stabilised B and counters are in the state)."""
    # DI from R-Init: the stabilised B and the monitor's records must survive the reload; the cap and a
    # short Euler fallback keep examples without a fixed point cheap
    di = {"init": "random", "max_norm": 1.0, "max_steps": 300}
    cfg = _cfg(rule, rule_params={**RULE_PARAMS.get(rule, {}), **(di if rule == "di" else {})})
    data = _data(cfg)
    full, _ = _plain_loop(cfg, data, steps=50)
    half, opt = _plain_loop(cfg, data, steps=25)
    blob = {"model": half.state_dict(), "opt": opt.state_dict()}
    fresh = build_model(TrainConfig(**{**cfg.__dict__, "seed": 99}).resolved(), 64, 10)
    fresh.load_state_dict(blob["model"])
    opt2 = torch.optim.SGD(fresh.parameters(), lr=cfg.lr)
    opt2.load_state_dict(blob["opt"])
    # continue the same batch stream: replay the order, skipping the 25 steps already taken
    c = cfg.resolved()
    crit = TeachingLoss(c.loss)
    x, y = torch.as_tensor(data.x_train, dtype=torch.float64), torch.as_tensor(data.y_train)
    order = torch.as_tensor(np.random.default_rng(c.seed).permutation(len(x)))
    for k in range(25, 50):
        idx = order[k * c.batch_size : (k + 1) * c.batch_size]
        training_step(fresh, crit, opt2, x[idx], y[idx])
    a, b = _state(full), _state(fresh)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if rule == "di":
        assert fresh.di_state.step == 50 and len(fresh.di_state.stability) == 50


@pytest.mark.parametrize("rule", [pytest.param(r, marks=pytest.mark.slow) if r in {"frfb", "rf-exact"} else r
                                  for r in ALL_RULES])
def test_resume_after_interrupt_is_bit_identical(rule, tmp_path, monkeypatch):
    """Interrupted during epoch 2 (Ctrl-C), resumed from the epoch-1 checkpoint: the final weights,
    feedback, optimizer state and metrics history equal an uninterrupted run's."""
    import importlib

    BT = importlib.import_module("bridge.train")  # the module (bridge.train is also the function)

    kw = dict(epochs=2, n_train=96, batch_size=16, optimizer="sgd", momentum=0.5, lr_schedule="cosine")
    ref = run_experiment(_cfg(rule, out=str(tmp_path / "ref"), **kw))
    calls = {"n": 0}
    real = BT.training_step

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:  # the third step of epoch 2 (6 steps per epoch)
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(BT, "training_step", interrupting)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt, match=f"continue with  credit train --resume {out}"):
        run_experiment(_cfg(rule, out=str(out), **kw))
    monkeypatch.setattr(BT, "training_step", real)
    res = run_experiment(_cfg(rule, out=str(out), **kw), resume=True)
    a, b = _state(ref["model"]), _state(res["model"])
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(res["history"]) == strip(ref["history"])
    model, cfg = load_run(out)
    assert torch.equal(model.linears[0].weight, res["model"].linears[0].weight) and cfg.rule == rule


def test_resume_refuses_a_changed_config_and_a_used_out(tmp_path):
    out = tmp_path / "r"
    run_experiment(_cfg("fa", out=str(out), n_train=32))
    with pytest.raises(ValueError, match="already holds results"):
        run_experiment(_cfg("fa", out=str(out), n_train=32))
    with pytest.raises(ValueError, match="differs .* lr"):
        run_experiment(_cfg("fa", out=str(out), n_train=32, lr=0.1), resume=True)
    with pytest.raises(ValueError, match="no checkpoint.pt"):
        run_experiment(_cfg("fa", out=str(tmp_path / "none"), n_train=32), resume=True)


def test_np_needs_the_teaching_loss_and_says_so():
    m = FeedbackMLP((6, 5, 3), "np", generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    with pytest.raises(RuntimeError, match="TeachingLoss"):
        nn.functional.cross_entropy(m(x), y).backward()


def test_np_plain_loop_follows_the_matrix_reference_for_50_steps():
    """The engine's NP against :func:`np_reference_step` (plasticity's matrix math) applied 50 times
    on the same noise stream, float64, ≤ 1e-10 relative (rounding only)."""
    import bridge.learned_feedback as BLF

    rule = P.NP(c_h=0.05, feedback_lr=2.0, ridge=1e-3, seed=4)
    g = torch.Generator().manual_seed(1)
    model = FeedbackMLP((6, 7, 5, 3), rule, generator=g, dtype=torch.float64)
    twin = FeedbackMLP((6, 7, 5, 3), rule, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    Ws = [w.detach().clone() for w in model.weights()]
    bs = [b.detach().clone() for b in model.biases()]
    Rs = [None if r is None else r.detach().clone() for r in model.feedbacks()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    crit = TeachingLoss("ce")
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = torch.tensor(rng.standard_normal((8, 6))), torch.tensor(rng.integers(0, 3, 8))
        xis = BLF.draw_np_noise(twin, 8)[0]  # the same stream, drawn from the twin's engine
        training_step(model, crit, opt, x, y)
        Ws, bs, Rs = BLF.np_reference_step(rule, Ws, bs, Rs, x, y, model.transfers, P.CrossEntropy(), 0.1, xis)
    for l, lin in enumerate(model.linears):
        assert (lin.weight.detach() - Ws[l]).abs().max() / Ws[l].abs().max() < 1e-10
        if Rs[l] is not None:
            assert (lin.feedback.detach() - Rs[l]).abs().max() / Rs[l].abs().max() < 1e-10


# ------------------------------------------------------------------------------------------ convert
class _Head(nn.Module):
    """The output layer is defined first: module order does not tell which layer is the output."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(8, 3)
        self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh())

    def forward(self, x):
        return self.out(self.body(x))


def test_convert_finds_the_output_from_the_real_output_and_skips_unread_feedback():
    torch.manual_seed(0)
    m = _Head().double()
    x = torch.randn(4, 5, dtype=torch.float64)
    c = convert(m, "dfa", example_input=x, generator=torch.Generator().manual_seed(0))
    assert c.out.is_output and not c.body[0].is_output
    assert c.body[0].feedback is None  # nothing reads the first layer's feedback
    assert tuple(c.out.feedback.shape) == (8, 3)
    assert [lin.index for lin in feedback_layers(c)] == [0, 1]


def test_convert_linear_with_leading_dims_equals_autograd_for_bp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    c = convert(m, "fa", example_input=x, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        c[2].feedback.copy_(c[2].weight.T)  # FA with R = Wᵀ is BP exactly
    (m(x) ** 2).sum().backward()
    (c(x) ** 2).sum().backward()
    for a, b in ((m[0].weight.grad, c[0].weight.grad), (m[2].weight.grad, c[2].weight.grad)):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=0)


def test_convert_refuses_layers_it_would_leave_on_backprop():
    m = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 3))
    x = torch.randn(2, 1, 4)
    with pytest.raises(ValueError, match=r"'0', '2' have learnable parameters that rule 'fa'"):
        convert(m, "fa", example_input=x, generator=torch.Generator())
    c = convert(m, "fa", example_input=x, generator=torch.Generator(), allow_backprop=[nn.Conv1d, "2"])
    assert c[3].rule.name == "fa"
    convert(m, "bp", example_input=x, generator=torch.Generator())  # bp: everything is backprop anyway


def test_convert_refuses_attention_and_handles_lazy_and_autocast():
    # attention reads out_proj's weights itself: it is not converted, and it is named
    with pytest.raises(ValueError, match="'mha'"):
        convert(_Att(), "fa", example_input=torch.randn(2, 3, 4), generator=torch.Generator())
    lazy = nn.Sequential(nn.LazyLinear(6), nn.ReLU(), nn.Linear(6, 2))
    c = convert(lazy, "urfb", example_input=torch.randn(3, 5), generator=torch.Generator().manual_seed(0))
    assert c[0].in_features == 5
    x, y = torch.randn(3, 5), torch.tensor([0, 1, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = c(x)
    assert out.dtype == torch.bfloat16
    TeachingLoss("ce")(out.float(), y).backward()
    assert c[2].feedback.grad is not None and c[0].weight.grad.dtype == torch.float32


class _Att(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(4, 1, batch_first=True)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.mha(x, x, x)[0].mean(1))


def test_metrics_on_a_converted_model():
    """Angles to BP on a converted model: FA with R = Wᵀ is at 0°, random R is not; W–R alignment."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    c = convert(m, "fa", example_input=x, generator=torch.Generator().manual_seed(0))
    a = signal_angles(c, x, y, P.CrossEntropy())
    assert len(a["angle_bp_deg"]) == 2 and a["angle_bp_deg"][1] > 20
    with torch.no_grad():
        for lin in (c[2], c[4]):
            lin.feedback.copy_(lin.weight.T)
    a = signal_angles(c, x, y, P.CrossEntropy())
    assert max(a["angle_bp_deg"]) < 1e-5
    fa = feedback_alignment(c)
    assert max(fa["alignment_deg"]) < 1e-5 and min(fa["sign_congruence"]) == 1.0


# ----------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, match", [
    (lambda m: m(torch.randn(3, 7)), "last dimension must be d_0=6"),
    (lambda m: m(torch.randn(0, 6)), "empty input"),
    (lambda m: TeachingLoss("ce")(m(torch.randn(3, 6)), torch.tensor([0.0, 1.0, 2.0])), "integer class labels"),
    (lambda m: TeachingLoss("mse")(m(torch.randn(3, 6)), torch.zeros(3, 4)), "target shape"),
])
def test_bad_input_to_a_network(bad, match):
    m = FeedbackMLP((6, 5, 3), "fa", generator=torch.Generator())
    with pytest.raises(ValueError, match=match):
        bad(m)


def test_bad_feedback_and_construction_arguments():
    m = FeedbackMLP((6, 5, 3), "fa", generator=torch.Generator())
    m.linears[1].feedback = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="feedback has shape"):
        m(torch.randn(2, 6))
    for kw, match in [(dict(weight_scale=0.0), "weight_scale"), (dict(weight_scale=float("nan")), "weight_scale"),
                      (dict(feedback_scale=-1.0), "feedback_scale")]:
        with pytest.raises(ValueError, match=match):
            FeedbackMLP((6, 5, 3), "fa", generator=torch.Generator(), **kw)
    with pytest.raises(ValueError, match="integers"):
        FeedbackMLP((6, 100.5, 3), "fa", generator=torch.Generator())
    with pytest.raises(ValueError, match="no parameter 'epsiln'; valid: epsilon"):
        P.make_rule("urfb", epsiln=0.5)


def test_nan_in_the_data_is_an_error_before_training():
    cfg = _cfg("fa", n_train=32)
    data = _data(cfg)
    data.x_train[3, 5] = np.nan
    with pytest.raises(ValueError, match="training inputs contains NaN"):
        run_experiment(cfg, data=data, write=False)


def test_runaway_training_is_reported_as_diverged(tmp_path):
    s = run_experiment(_cfg("bp", lr=500.0, out=str(tmp_path / "d"), n_train=64))
    assert s["status"] == "diverged" and "lower --lr" in s["message"]
    import json

    assert json.loads((tmp_path / "d" / "summary.json").read_text())["status"] == "diverged"


def test_optimizers_and_any_iterable_of_batches():
    """``train`` takes any torch optimizer and any iterable of batches (a DataLoader)."""
    from torch.utils.data import DataLoader, TensorDataset

    from bridge.train import train

    cfg = _cfg("urfb", epochs=2).resolved()
    data = _data(cfg)
    model = build_model(cfg, 64, 10)
    R0 = model.linears[1].feedback.detach().clone()
    loader = DataLoader(TensorDataset(torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)), batch_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    hist = train(model, loader, TeachingLoss("ce"), cfg, optimizer=opt, test=(data.x_test, data.y_test))
    assert hist[-1]["test_loss"] < 0.8 * hist[0]["test_loss"]
    assert not torch.equal(model.linears[1].feedback, R0)  # Adam moved R too
    assert "exp_avg" in opt.state[model.linears[1].feedback]


def test_registries_fail_loudly():
    from bridge.app import registry
    from bridge.engines import register_engine

    with pytest.raises(ModuleNotFoundError, match="listed but does not exist"):
        registry.load(["bridge.checks.no_such_module"])
    registry.load(registry.CHECK_MODULES)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_check("rf-exact-closed-form")(lambda opts: [])
    with pytest.raises(ValueError, match="already registered"):
        register_engine(P.NP)(type("Other", (), {}))

    class Fake(P.Rule, P.ActivityLearnedFeedback):
        name = "fake"

        def propagate(self, W, R, delta, *, delta_out=None):
            return delta @ R.T

    with pytest.raises(TypeError, match="needs a network-level engine"):
        FeedbackMLP((4, 3, 2), Fake(), generator=torch.Generator())
    with pytest.raises(ValueError, match="registered twice"):
        P.register_rule(type("NPTwin", (P.Rule,), {"name": "np", "propagate": lambda *a, **k: None}))


@pytest.mark.parametrize("rule", ["urfb", "np"])
def test_extending_a_finished_run_equals_training_that_long(rule, tmp_path, capsys):
    """credit train --resume DIR --epochs 3 on a finished 2-epoch run: the same weights, feedback and
    history as 3 epochs from the start (NP: its noise generator continues too)."""
    out = tmp_path / "r"
    kw = {"n_train": 32, "epochs": 2}
    run_experiment(_cfg(rule, out=str(out), **kw))
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    longer = run_experiment(_cfg(rule, **{**kw, "epochs": 3}), write=False)
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    mine = longer["model"].state_dict()
    assert saved["state"]["epoch"] == 3
    assert all(torch.equal(saved["model"][k], v) for k, v in mine.items() if torch.is_tensor(v))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_loss"] for r in rows] == [r["test_loss"] for r in longer["history"]]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "finished" and json.loads((out / "config.json").read_text())["epochs"] == 3


def test_extending_refuses_fewer_epochs_and_a_cosine_schedule(tmp_path, capsys):
    out, cos = tmp_path / "r", tmp_path / "c"
    run_experiment(_cfg("fa", out=str(out), n_train=32, epochs=2))
    assert main(["train", "--resume", str(out), "--epochs", "1"]) == 2
    assert "has trained 2 epochs already" in capsys.readouterr().err
    assert (out / "summary.json").is_file()  # nothing changed
    assert main(["train", "--resume", str(out), "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    run_experiment(_cfg("fa", out=str(cos), n_train=32, epochs=1, lr_schedule="cosine"))
    assert main(["train", "--resume", str(cos), "--epochs", "2"]) == 2
    assert "cosine" in capsys.readouterr().err
