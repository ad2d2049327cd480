"""Property tests of the ``credit`` command line: whatever the options, TOML values or rule parameters,
a command either runs or stops with exit status 2 and one line ``credit CMD: error: …`` that names an
option of that command — never a traceback."""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app.cli import build_parser, main

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                derandomize=True)
TINY = ["--task", "digits", "--sizes", "64-8-10", "--n-train", "16", "--n-test", "16", "--epochs", "0", "--quiet"]
_counter = itertools.count()


def _options(command: str) -> set[str]:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {s for a in sub._actions for s in a.option_strings}


def invoke(argv):
    """Run ``credit ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:  # argparse
                rc = e.code
    finally:
        torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()


RAN = (0, 3)  # finished, or stopped as diverged (a result too)


def check_outcome(command, argv, rc, err, ok=(0,)):
    """Ran (``rc`` in ``ok``) or a one-line usage error naming only options of ``command``."""
    if rc in ok:
        return
    lines = err.strip().splitlines()
    assert rc == 2, f"credit {' '.join(map(str, argv))}: exit {rc}\n{err}"
    assert len(lines) == 1, f"credit {' '.join(map(str, argv))}: {len(lines)} lines on stderr\n{err}"
    assert lines[0].startswith(f"credit {command}: error:"), lines[0]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", lines[0]))
    assert named <= _options(command), f"{lines[0]!r} names {named - _options(command)}, not options of {command}"


# ------------------------------------------------------------------------------ values of any kind
HUGE = [2**31, 2**63, 2**64, -(2**64), 10**30]
ints = st.one_of(st.integers(-3, 20), st.sampled_from(HUGE))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 1.5, 2.7, -1.0, 1e-300, 1e308, math.nan, math.inf, -math.inf]))
words = st.one_of(st.sampled_from(["", " ", "x", "true", "nan", "inf", "-1", "1e999", "0x10", "digits", "cpu", "cuda",
                                   "cuda:7", "meta", "mse", "ce", "hinge", "fa", "urfb", "64-8-10", "é", "a=b"]),
                  st.text(max_size=6))


def cli_text(x) -> str:
    return repr(x) if isinstance(x, float) and not math.isfinite(x) else str(x)


cli_values = st.one_of(ints, floats, words, st.booleans()).map(cli_text)

# not --epochs: a huge valid count would train for ever (the named cases below check its validation)
TRAIN_VALUED = ["--task", "--rule", "--sizes", "--arch", "--activation", "--output-activation", "--loss",
                "--lr", "--batch-size", "--seed", "--optimizer", "--momentum", "--weight-decay", "--lr-schedule",
                "--lr-min", "--lr-step", "--lr-gamma", "--evals-per-epoch", "--sparsity", "--feedback-sparsity",
                "--epsilon", "--alpha", "--mu", "--rule-param", "--n-train", "--n-test", "--dtype", "--device",
                "--threads", "--data-dir"]


def _out(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / f"o{next(_counter)}"


@settings(max_examples=60, **SETTINGS)
@given(opts=st.lists(st.tuples(st.sampled_from(TRAIN_VALUED), cli_values), min_size=1, max_size=2))
def test_train_options(opts, tmp_path_factory):
    argv = ["train", *TINY, *(f"{k}={v}" for k, v in opts), "--out", _out(tmp_path_factory)]
    rc, _, err = invoke(argv)
    check_outcome("train", argv, rc, err, ok=RAN)


# the options a reviewer named, each on its own (deterministic)
NAMED = [
    (["--seed", str(2**64)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--n-train", "0"], "--n-train"),
    (["--n-test", "-5"], "--n-test"),
    (["--epochs", "-1"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--evals-per-epoch", str(2**40)], "--evals-per-epoch"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--threads", "0"], "--threads"),
    (["--threads", str(2**64)], "--threads"),
    (["--device", "cuda:99"] if torch.cuda.is_available() else ["--device", "cuda"], "--device"),
    (["--device", "nonsense"], "--device"),
    (["--rule-param", "novalue"], "--rule-param"),
    (["--rule", "urfb", "--rule-param", "epsilon=nan"], "epsilon"),
    (["--rule", "urfb", "--epsilon", "2"], "epsilon"),
    (["--loss", "hinge", "--mu", "0"], "--mu"),
    (["--mu", "0.5"], "--mu"),
]


@pytest.mark.parametrize("extra,names", NAMED, ids=[" ".join(e) for e, _ in NAMED])
def test_train_named_errors(extra, names, tmp_path):
    argv = ["train", *TINY, *extra, "--out", tmp_path / "o"]
    rc, _, err = invoke(argv)
    check_outcome("train", argv, rc, err, ok=())
    assert names in err


@pytest.mark.parametrize("loss", ["hinge", "ce"])
def test_classification_loss_on_a_regression_task(loss, tmp_path):
    argv = ["train", "--task", "lillicrap-linear", "--loss", loss, "--n-train", "16", "--n-test", "16", "--epochs", "1",
            "--quiet", "--out", tmp_path / "o"]
    rc, _, err = invoke(argv)
    check_outcome("train", argv, rc, err, ok=())
    assert "--loss" in err


def test_out_that_cannot_be_a_results_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for out in (f, f / "below"):
        argv = ["train", *TINY, "--out", out]
        rc, _, err = invoke(argv)
        check_outcome("train", argv, rc, err, ok=())
        assert "--out" in err


def test_config_that_is_no_toml_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1\n")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00seed")
    for cfg in (tmp_path, tmp_path / "missing.toml", bad, binary):
        argv = ["train", *TINY, "--config", cfg, "--out", tmp_path / "o"]
        rc, _, err = invoke(argv)
        check_outcome("train", argv, rc, err, ok=())
        assert "--config" in err


# ------------------------------------------------------------------------------------ TOML values
def toml_value(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else repr(x)
    if isinstance(x, str):
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(x, list):
        return "[" + ", ".join(toml_value(v) for v in x) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in x.items()) + "}"


toml_ints = st.one_of(st.integers(-3, 20), st.sampled_from([2**31, 2**63 - 1, -(2**63)]))  # TOML holds int64
scalars = st.one_of(toml_ints, floats, words, st.booleans())
toml_values = st.one_of(scalars, st.lists(scalars, max_size=3),
                        st.dictionaries(st.sampled_from(["epsilon", "alpha", "a", "seed"]), scalars, max_size=2))
TOML_KEYS = ["task", "rule", "sizes", "arch", "untied", "activation", "output_activation", "loss", "lr",
             "batch_size", "seed", "optimizer", "momentum", "weight_decay", "lr_schedule", "lr_min", "lr_step",
             "lr_gamma", "weight_scale", "feedback_scale", "sparsity", "feedback_sparsity", "bias", "epsilon", "alpha",
             "mu", "rule_params", "data_dir", "n_train", "n_test", "evals_per_epoch", "probe_size", "dtype", "device",
             "out", "quiet", "no_such_key"]
BASE = {"task": "digits", "sizes": "64-8-10", "n_train": 16, "n_test": 16, "epochs": 0, "quiet": True}


@settings(max_examples=60, **SETTINGS)
@given(values=st.dictionaries(st.sampled_from(TOML_KEYS), toml_values, min_size=1, max_size=2))
def test_train_toml_values(values, tmp_path_factory):
    d = tmp_path_factory.getbasetemp() / f"c{next(_counter)}"
    d.mkdir()
    raw = {**BASE, **values}
    if "out" in values:  # a relative out would land in the working directory
        raw["out"] = str(d / "o") if isinstance(values["out"], str) else values["out"]
    (d / "c.toml").write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in raw.items()))
    argv = ["train", "--config", d / "c.toml"] + ([] if "out" in values else ["--out", d / "out"])
    rc, _, err = invoke(argv)
    check_outcome("train", argv, rc, err, ok=RAN)


@pytest.mark.parametrize("line", ["seed = 1.5", 'task = ["digits"]', "epochs = 2.7", "batch_size = true",
                                  "out = 5", "data_dir = [1]", "rule_params = 3", "sizes = [64, 8.5, 10]",
                                  "device = 1", "lr = inf"])
def test_train_toml_named_values(line, tmp_path):
    (tmp_path / "c.toml").write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in BASE.items()
                                             if k != line.split()[0]) + line + "\n")
    argv = ["train", "--config", tmp_path / "c.toml"] + ([] if line.startswith("out") else ["--out", tmp_path / "o"])
    rc, _, err = invoke(argv)
    check_outcome("train", argv, rc, err, ok=())
    key = line.split()[0]
    assert key in err or "--" + key.replace("_", "-") in err


# -------------------------------------------------------------------------------- rule parameters
PARAMS = ["epsilon", "alpha", "max_norm", "dt", "tol", "max_steps", "method", "init", "n_samples", "seed", "c_h",
          "feedback_lr", "ridge", "mode", "noise_std", "n_noise", "decay", "forward_recirculation", "chain",
          "transfer", "architecture", "stabilize", "around", "nope"]


@settings(max_examples=80, **SETTINGS)
@given(rule=st.sampled_from(["bp", "urfb", "pbp", "ndi", "di", "np", "rf"]),
       params=st.dictionaries(st.sampled_from(PARAMS), st.one_of(ints, floats, words, st.booleans(), st.none(),
                                                                 st.lists(ints, max_size=2)), max_size=2))
def test_make_rule_parameters(rule, params):
    from bridge.app import registry
    from plasticity import make_rule

    registry.load_rules()
    try:
        make_rule(rule, **params)
    except ValueError as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=25, **SETTINGS)
@given(rule=st.sampled_from(["urfb", "ndi", "np", "rf"]),
       params=st.lists(st.tuples(st.sampled_from(PARAMS), cli_values), min_size=1, max_size=2))
def test_train_rule_params(rule, params, tmp_path_factory):
    argv = ["train", *TINY, "--rule", rule, "--sizes", "64-10"]
    for k, v in params:
        argv += [f"--rule-param={k}={v}"]
    argv += ["--out", _out(tmp_path_factory)]
    rc, _, err = invoke(argv)
    check_outcome("train", argv, rc, err, ok=RAN)


# ------------------------------------------------------------------------- crossval, bench, run
@settings(max_examples=30, **SETTINGS)
@given(opt=st.sampled_from(["--examples", "--sizes", "--only", "--seed"]), value=cli_values)
def test_crossval_options(opt, value):
    argv = ["crossval", f"{opt}={value}", "--only" if opt != "--only" else "--quiet", "no-such-check", "--quiet"]
    rc, _, err = invoke(argv)
    check_outcome("crossval", argv, rc, err, ok=())


@settings(max_examples=30, **SETTINGS)
@given(opt=st.sampled_from(["--only", "--repeats", "--threads", "--seed", "--device"]), value=cli_values)
def test_bench_options(opt, value):
    # each run also asks for an unknown group or zero repeats, so no benchmark starts
    argv = ["bench", f"{opt}={value}", *(["--repeats", "0"] if opt != "--repeats" else ["--only", "no-such-group"]), "--quiet"]
    rc, _, err = invoke(argv)
    check_outcome("bench", argv, rc, err, ok=())


@settings(max_examples=15, **SETTINGS)
@given(value=cli_values)
def test_run_threads(value, tmp_path_factory):
    # an unknown rule stops the run before training, after --threads is checked
    argv = ["run", f"--threads={value}", "--rules", "no-such-rule", "--quiet", "--out", _out(tmp_path_factory)]
    rc, _, err = invoke(argv)
    check_outcome("run", argv, rc, err, ok=())
