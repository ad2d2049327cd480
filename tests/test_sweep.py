"""``credit sweep``: a grid of credit train runs on worker processes (or Ray), resumable, with
runs.csv, table.md (mean ± sd over seeds) and figures; each run equals credit train on its config."""

import contextlib
import csv
import dataclasses
import io
import json
import statistics
from pathlib import Path

import pytest
import torch

from bridge.app import sweep as sw
from bridge.app.cli import main
from bridge.app.runs import TrainConfig, run_experiment

# sizes 30-20-10 do not fit digits (64 inputs): those four runs fail inside run_experiment
SWEEP = """
task = "digits"
n_train = 64
n_test = 64
epochs = 1
[grid]
rules = ["fa", "urfb"]
seeds = [0, 1]
sizes = ["64-16-10", "30-20-10"]
"""


def _rows(out):
    with open(Path(out) / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep interrupted (Ctrl-C) after its first result, then rerun to the end (2 workers)."""
    root = tmp_path_factory.mktemp("sweep")
    cfg, out = root / "s.toml", root / "out"
    cfg.write_text(SWEEP)
    mp = pytest.MonkeyPatch()
    calls = []
    real = sw.write_table

    def interrupt_after_first_result(*a, **k):
        real(*a, **k)
        calls.append(1)
        if len(calls) == 2:  # the first call writes the empty table before anything runs
            raise KeyboardInterrupt

    mp.setattr(sw, "write_table", interrupt_after_first_result)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc_interrupted = sw.main(cfg, workers=2, out=out, quiet=True)
    finally:
        mp.undo()
    first = _rows(out)
    summaries = {p.parent.name: (p.stat().st_mtime_ns, p.read_text()) for p in (out / "runs").glob("*/summary.json")}
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        rc = main(["sweep", str(cfg), "--out", str(out), "--workers", "2", "--quiet"])
    return {"cfg": cfg, "out": out, "rc_interrupted": rc_interrupted, "first": first, "summaries": summaries,
            "rc": rc, "interrupt_message": err.getvalue(), "said": said.getvalue(), "rows": _rows(out),
            "record": (out / "sweep.json").read_text()}


def test_interrupted_sweep_resumes_only_the_missing_runs(swept):
    assert swept["rc_interrupted"] == 130 and len(swept["first"]) == 1
    msg = swept["interrupt_message"].strip().splitlines()
    assert len(msg) == 1 and "interrupted with 1 of 8 runs done" in msg[0] and "to resume" in msg[0]
    n = len(swept["summaries"])
    assert f"8 runs ({n} done before, {8 - n} now): 4 finished, 0 diverged, 4 failed" in swept["said"]
    # folders that were complete when the sweep was interrupted were not run again
    for key, (mtime, text) in swept["summaries"].items():
        p = swept["out"] / "runs" / key / "summary.json"
        assert p.stat().st_mtime_ns == mtime and p.read_text() == text
    assert len(swept["rows"]) == 8
    assert json.loads(swept["record"])["grid"]["rule"] == ["fa", "urfb"]


def test_runs_csv_and_failed_runs(swept):
    assert swept["rc"] == 3  # some runs failed
    rows = swept["rows"]
    assert [(r["rule"], r["seed"], r["sizes"]) for r in rows][:3] == [
        ("fa", "0", "[64, 16, 10]"), ("fa", "0", "[30, 20, 10]"), ("fa", "1", "[64, 16, 10]")]
    for r in rows:
        assert set(r) >= {"key", "task", "lr", "batch_size", "epochs", "n_train", "test_error", "test_loss",
                          "angle_bp_deg", "status", "error", "seconds"}
        folder = swept["out"] / "runs" / r["key"]
        assert r["key"].startswith(f"{r['rule']}-seed{r['seed']}-")
        if r["sizes"] == "[30, 20, 10]":
            assert r["status"] == "failed" and "do not fit task 'digits'" in r["error"]
            assert r["test_error"] == "" and "\n" not in r["error"]
            continue
        s = json.loads((folder / "summary.json").read_text())
        assert r["status"] == "finished" and r["error"] == ""
        assert float(r["test_error"]) == s["final"]["test_error"]
        assert float(r["seconds"]) == s["final"]["seconds"]
        assert json.loads(r["angle_bp_deg"]) == s["final"]["angle_bp_deg"]
        assert r["lr"] == "0.05" and r["batch_size"] == "16" and r["n_train"] == "64"  # the task's defaults


def test_table_mean_sd_ddof1_per_group(swept):
    table = (swept["out"] / "table.md").read_text()
    assert "| rule | sizes | n | test_error |" in table
    rows = swept["rows"]
    for rule in ("fa", "urfb"):
        errs = [float(r["test_error"]) for r in rows if r["rule"] == rule and r["status"] == "finished"]
        assert len(errs) == 2 and errs[0] != errs[1]
        cell = f"{statistics.mean(errs):.4g} ± {statistics.stdev(errs):.2g}"  # stdev: ddof 1
        assert f"| {rule} | 64-16-10 | 2 | {cell} |" in table
        assert f"| {rule} | 30-20-10 | 0 | - |" in table and "2 failed |" in table
    assert (swept["out"] / "figures" / "test_error.png").stat().st_size > 0
    assert (swept["out"] / "figures" / "test_loss.png").stat().st_size > 0


def test_a_sweep_run_equals_credit_train(swept):
    """Bit-identical on CPU: a run's final state_dict equals run_experiment on its config (a run the
    interruption caught: it continued from its checkpoint, or started again)."""
    torch.set_num_threads(1)  # as the sweep's workers
    rows = [r for r in swept["rows"] if r["status"] == "finished" and r["key"] not in swept["summaries"]]
    for r in rows[:1]:
        folder = swept["out"] / "runs" / r["key"]
        raw = json.loads((folder / "config.json").read_text())
        cfg = TrainConfig(**{**raw, "sizes": tuple(raw["sizes"])})
        mine = run_experiment(cfg, write=False)["model"].state_dict()
        theirs = torch.load(folder / "checkpoint.pt", weights_only=False)["model"]
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert torch.equal(mine[k], theirs[k]), (r["key"], k)


def test_the_key_is_the_resolved_config(tmp_path):
    def one(**base):
        return sw.expand(sw.parse_sweep({"task": "digits", **base, "grid": {"rule": ["fa"]}}), tmp_path)[0]

    implicit = one()
    assert implicit.key == one(lr=0.05, batch_size=16, seed=0).key  # the task's defaults, given or not
    other = one(lr=0.1)
    assert other.key != implicit.key and other.key.startswith("fa-seed0-")
    assert one(data_dir="/elsewhere").key == implicit.key  # where the (checksummed) data lives is no part of it
    with pytest.raises(ValueError, match="are the same run"):
        sw.expand(sw.parse_sweep({"grid": {"rule": ["fa", "fa"]}}), tmp_path)


def test_bad_sweep_files(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text('rule = "fa"\nlearning_rate = 0.1\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown keys" in err and "learning_rate" in err and "batch_size" in err and "grid" in err
    f.write_text('[grid]\nrule = "fa"\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "must be a non-empty list" in capsys.readouterr().err
    f.write_text('epsilon = 0.5\n[grid]\nrule = ["urfb", "fa"]\n')  # fa has no epsilon: as credit train says
    assert main(["sweep", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "grid point rule=\"fa\"" in err and "epsilon" in err
    f.write_text('[grid]\nrule = ["fa"]\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "--address", "x:1"]) == 2
    assert "--engine ray" in capsys.readouterr().err


def test_engine_ray_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    f = tmp_path / "s.toml"
    f.write_text('[grid]\nrule = ["fa"]\n')
    assert main(["sweep", str(f), "--engine", "ray", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "credit-circuits[sweep]"' in err[0]


@pytest.mark.slow  # starting Ray takes ~30 s on a busy two-core machine
def test_local_and_ray_give_the_same_numbers(swept, tmp_path):
    pytest.importorskip("ray")
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.replace('rules = ["fa", "urfb"]', 'rules = ["urfb"]').replace(', "30-20-10"', ""))
    assert main(["sweep", str(cfg), "--engine", "ray", "--workers", "2", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    local = {r["key"]: r for r in swept["rows"]}
    ray_rows = _rows(tmp_path / "o")
    assert len(ray_rows) == 2
    for r in ray_rows:
        assert {k: v for k, v in r.items() if k != "seconds"} == {k: v for k, v in local[r["key"]].items()
                                                                  if k != "seconds"}


def test_a_run_caught_mid_way_continues_to_the_same_result(tmp_path, monkeypatch):
    """What a rerun does with the folder of a run that Ctrl-C stopped after its first epoch."""
    import importlib

    loop = importlib.import_module("bridge.train")  # the module (bridge.train is also the function)
    s = sw.parse_sweep({"task": "digits", "sizes": "64-16-10", "n_train": 64, "n_test": 64, "epochs": 2,
                        "grid": {"rule": ["urfb"]}})
    (run,) = sw.expand(s, tmp_path)
    job = sw._job(run, threads=1)
    real, steps = loop.training_step, []

    def stop_in_epoch_two(*a, **k):
        steps.append(1)
        if len(steps) == 6:  # 4 steps per epoch
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "training_step", stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        sw.run_one(job)
    monkeypatch.undo()
    folder = Path(run.config.out)
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["state"]["epoch"] == 1
    assert not (folder / "summary.json").exists()
    assert sw.run_one(job)["status"] == "finished"
    theirs = torch.load(folder / "checkpoint.pt", weights_only=False)["model"]
    mine = run_experiment(dataclasses.replace(run.config, out=None), write=False)["model"].state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_help():
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0


def test_raising_epochs_in_a_sweep_file_continues_its_runs(tmp_path):
    """A sweep rerun with epochs 1 → 2 starts each run from a copy of its 1-epoch folder (the first
    epoch's rows are the saved ones) and ends equal to 2 epochs from the start; the 1-epoch runs stay."""
    import importlib

    base = {"task": "digits", "sizes": "64-16-10", "n_train": 64, "n_test": 64, "grid": {"rule": ["urfb"]}}
    out = tmp_path / "s"
    sw.run_sweep(sw.parse_sweep({**base, "epochs": 1}), out, workers=1, quiet=True)
    (short,) = list((out / "runs").iterdir())
    first_rows = (short / "metrics.jsonl").read_text().splitlines()
    loop = importlib.import_module("bridge.train")
    s2 = sw.parse_sweep({**base, "epochs": 2})
    (run,) = sw.expand(s2, out)
    assert sw._shorter_runs(out, [run]) == {run.key: str(short)}
    steps = []
    real = loop.training_step
    loop.training_step = lambda *a, **k: (steps.append(1), real(*a, **k))[1]
    try:
        assert sw.run_one(sw._job(run, 1, str(short)))["status"] == "finished"
    finally:
        loop.training_step = real
    assert len(steps) == 4  # only the second epoch was trained (64 images, batch 16)
    folder = Path(run.config.out)
    assert (folder / "metrics.jsonl").read_text().splitlines()[:len(first_rows)] == first_rows
    theirs = torch.load(folder / "checkpoint.pt", weights_only=False)["model"]
    mine = run_experiment(dataclasses.replace(run.config, out=None), write=False)["model"].state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert (short / "summary.json").is_file()  # the shorter run is left as it was
    res = sw.run_sweep(s2, out, workers=1, quiet=True)  # the whole sweep now finds it done
    assert res.skipped == 1 and res.count("finished") == 1 and res.extended == 0
    s3 = sw.parse_sweep({**base, "epochs": 3})  # and a sweep run through its workers continues the 2-epoch copy
    res = sw.run_sweep(s3, out, workers=1, quiet=True)
    assert res.extended == 1 and res.count("finished") == 1
    (run3,) = sw.expand(s3, out)
    lines = (Path(run3.config.out) / "metrics.jsonl").read_text().splitlines()
    assert lines[:len(first_rows)] == first_rows and len(lines) == 4  # epochs 0, 1, 2, 3


def test_an_extension_whose_data_failed_continues_on_the_next_try(shared_data, tmp_path):
    """Raising epochs while the data cannot be read records the run as failed and keeps its copy of
    the shorter run; a folder a failed start left without a checkpoint does not block the extension
    either; the next try continues from the shorter run's last epoch."""
    base = {"task": "mnist", "sizes": "784-16-10", "n_train": 64, "n_test": 64, "grid": {"rule": ["fa"]}}
    out = tmp_path / "s"
    (short,) = sw.expand(sw.parse_sweep({**base, "epochs": 1, "data_dir": str(shared_data)}), out)
    assert sw.run_one(sw._job(short, 1))["status"] == "finished"
    first_rows = (Path(short.config.out) / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "empty").mkdir()
    (run,) = sw.expand(sw.parse_sweep({**base, "epochs": 2, "data_dir": str(tmp_path / "empty")}), out)
    folder = Path(run.config.out)
    folder.mkdir(parents=True)  # what a failed fresh start leaves: a folder without a checkpoint
    assert sw._shorter_runs(out, [run]) == {run.key: short.config.out}
    r = sw.run_one(sw._job(run, 1, short.config.out))
    assert r["status"] == "failed" and r["error"].startswith("DataError"), r
    assert (folder / "checkpoint.pt").is_file()  # the copy stays, to be continued
    (run,) = sw.expand(sw.parse_sweep({**base, "epochs": 2, "data_dir": str(shared_data)}), out)
    assert sw.run_one(sw._job(run, 1, sw._shorter_runs(out, [run]).get(run.key)))["status"] == "finished"
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert lines[:len(first_rows)] == first_rows and len(lines) == len(first_rows) + 1


CASES = """
task = "digits"
sizes = "64-16-10"
n_train = 64
n_test = 64
epochs = 1
[grid]
seeds = [0, 1]
[[case]]
rule = "fa"
lr = 0.02
[[case]]
rule = "urfb"
epsilon = 0.5
"""


def test_cases_change_options_together(tmp_path):
    """Each [[case]] times the grid: a case's options go to its runs only, groups are told apart by
    the case keys (a key a case lacks shows as "-"), and each run is credit train on its config."""
    f, out = tmp_path / "s.toml", tmp_path / "out"
    f.write_text(CASES)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["sweep", str(f), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    rows = _rows(out)
    got = sorted((r["rule"], r["seed"], r["lr"], r["epsilon"]) for r in rows)
    # fa at the case's lr; urfb at the task's lr (0.05) with the case's ε; every case on both seeds
    assert got == [("fa", "0", "0.02", ""), ("fa", "1", "0.02", ""),
                   ("urfb", "0", "0.05", "0.5"), ("urfb", "1", "0.05", "0.5")]
    assert all(r["status"] == "finished" for r in rows)
    table = (out / "table.md").read_text()
    assert "| rule | lr | epsilon | n | test_error |" in table
    assert "| fa | 0.02 | - | 2 |" in table and "| urfb | - | 0.5 | 2 |" in table
    assert json.loads((out / "sweep.json").read_text())["cases"] == [{"rule": "fa", "lr": 0.02},
                                                                     {"rule": "urfb", "epsilon": 0.5}]
    torch.set_num_threads(1)
    r = next(r for r in rows if r["rule"] == "urfb" and r["seed"] == "1")
    folder = out / "runs" / r["key"]
    raw = json.loads((folder / "config.json").read_text())
    mine = run_experiment(TrainConfig(**{**raw, "sizes": tuple(raw["sizes"])}), write=False)["model"].state_dict()
    theirs = torch.load(folder / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize("text, says", [
    ('case = 3\n', "must be [[case]] tables"),
    ('[[case]]\n', "[[case]] 1 in"),
    ('[[case]]\nrule = "fa"\n[[case]]\nlearning_rate = 0.1\n', "unknown key 'learning_rate' in [[case]] 2"),
    ('[[case]]\nout = "x"\n', "unknown key 'out' in [[case]] 1"),
    ('[grid]\nrule = ["fa"]\n[[case]]\nrule = "bp"\n', "rule in [[case]] 1 of"),
    ('lr = 0.1\n[[case]]\nlr = 0.2\n', "is also a fixed option"),
    ('[[case]]\nrule = "fa"\n[[case]]\nrule = "fa"\n', "repeats [[case]] 1"),
])
def test_bad_cases(tmp_path, capsys, text, says):
    f = tmp_path / "s.toml"
    f.write_text(text)
    assert main(["sweep", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_best_test_error_and_its_epoch(swept, tmp_path):
    """runs.csv and table.md carry each run's lowest test error and the epoch it came at, read from
    the run's own metrics.jsonl."""
    for r in swept["rows"]:
        if r["status"] != "finished":
            assert r["best_test_error"] == ""
            continue
        hist = [json.loads(line) for line in (swept["out"] / "runs" / r["key"] / "metrics.jsonl").read_text().splitlines()]
        errs = [h["test_error"] for h in hist]
        assert float(r["best_test_error"]) == min(errs)
        assert float(r["best_epoch"]) == hist[errs.index(min(errs))]["epoch"]
    assert "| best_test_error | best_epoch |" in (swept["out"] / "table.md").read_text()
    rows = [{"epoch": 0.5, "test_error": 0.3}, {"epoch": 1.0, "test_error": 0.2}, {"epoch": 1.5, "test_error": 0.2},
            {"epoch": 2.0, "test_error": 0.25}]
    assert sw.best_of(rows) == {"best_test_error": 0.2, "best_epoch": 1.0}  # the first of a tie
    assert sw.best_of([{"epoch": 1.0, "test_nse": 0.4}, {"epoch": 2.0, "test_nse": 0.1}]) == \
        {"best_test_nse": 0.1, "best_epoch": 2.0}
    assert sw.best_of([]) == {}
