"""The ``credit`` command line: every subcommand answers --help and writes what it promises."""

import json
import subprocess
import sys

import pytest

from bridge.app.cli import main

COMMANDS = ["run", "train", "sweep", "circuit", "crossval", "reproduce", "bench"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: credit " + cmd in capsys.readouterr().out


def test_python_dash_m_bridge():
    out = subprocess.run([sys.executable, "-m", "bridge", "--help"], capture_output=True, text=True, check=True)
    assert all(c in out.stdout for c in COMMANDS)


def test_train_writes_summary(tmp_path, capsys):
    out = tmp_path / "t"
    rc = main(["train", "--task", "lillicrap-linear", "--rule", "fa", "--sizes", "30-20-10", "--epochs", "1",
               "--lr", "0.005", "--batch-size", "1", "--seed", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert (s["rule"], s["task"], s["seed"]) == ("fa", "lillicrap-linear", 3)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    first = rows[0]["test_loss"]
    # it learned: the test loss falls ~5 orders of magnitude (≈50 → ≲1e-3 over seeds 0–4); ask for 3
    assert first > 10.0 and s["final"]["test_loss"] < 1e-3 * first
    # FA's signature: the hidden update is aligned with BP's but not equal to it (26–30° over seeds 0–4)
    assert len(s["final"]["angle_bp_deg"]) == 1 and 5.0 < s["final"]["angle_bp_deg"][0] < 60.0


def test_train_from_toml_with_flag_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('task = "digits"\nrule = "fa"\nepsilon = 0.5\nepochs = 3\nsizes = "64-20-10"\nn_train = 100\n')
    out = tmp_path / "o"
    # the file's epsilon is not a parameter of fa: an error, not an ignored option
    assert main(["train", "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert main(["train", "--config", str(cfg), "--rule", "urfb", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    c = json.loads((out / "config.json").read_text())
    assert s["rule"] == "urfb" and s["sizes"] == [64, 20, 10]
    assert c["epsilon"] == 0.5 and c["epochs"] == 1


def test_unknown_names_list_the_valid_ones(capsys):
    assert main(["train", "--task", "digits", "--rule", "backprop", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown rule 'backprop'" in err and "urfb" in err
    assert main(["train", "--task", "imagenet", "--quiet"]) == 2
    assert "lillicrap-linear" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--sizes", "30-x-10"])


def test_crossval_json_and_exit_status(tmp_path):
    path = tmp_path / "cv.json"
    assert main(["crossval", "--only", "engine-fa-transpose-is-bp", "--json", str(path), "--quiet"]) == 0
    checks = json.loads(path.read_text())["checks"]
    assert checks and set(checks[0]) >= {"name", "max_rel_diff", "tolerance", "passed"} and checks[0]["passed"]
    assert main(["crossval", "--only", "no-such-check", "--quiet"]) == 2


def test_crossval_fails_loudly_when_a_check_fails(tmp_path, monkeypatch):
    from bridge.app import registry

    registry.load(registry.CHECK_MODULES)
    monkeypatch.setitem(registry.CHECKS, "broken", lambda o: [registry.CheckResult("broken", 1.0, 1e-9)])
    assert main(["crossval", "--only", "broken", "--quiet"]) == 1


def test_bench_json(tmp_path):
    path = tmp_path / "b.json"
    assert main(["bench", "--only", "rules", "--quick", "--json", str(path), "--quiet"]) == 0
    rows = json.loads(path.read_text())["results"]
    names = [r["name"] for r in rows]
    assert any("torch-bp" in n for n in names) and any(" fa " in n for n in names)
    assert all(set(r) == {"name", "value", "unit", "ratio"} and r["value"] > 0 for r in rows)


def test_bench_prints_each_row_when_it_is_measured(monkeypatch, capsys):
    from bridge.app import registry

    registry.load(registry.BENCH_MODULES)
    seen = []

    def slow_group(opts):
        for k in range(2):
            seen.append(capsys.readouterr().err)  # what the user had seen before row k was measured
            yield {"name": f"row{k}", "value": 1.0, "unit": "ms", "ratio": None}

    monkeypatch.setitem(registry.BENCHES, "slow", slow_group)
    assert main(["bench", "--only", "slow"]) == 0
    assert "bench slow" in seen[0] and "row0" not in seen[0]
    assert "row0: 1 ms" in seen[1] and "row1" not in seen[1]  # row 0 was shown before row 1 was measured
    assert "row1: 1 ms" in capsys.readouterr().err


def test_circuit_reports_progress_through_the_demo_log(tmp_path, monkeypatch, capsys):
    from bridge.app import registry

    registry.load(registry.DEMO_MODULES)

    def demo(out, seed=0, log=None):
        log("halfway")
        return []

    monkeypatch.setitem(registry.DEMOS, "fake", demo)
    assert main(["circuit", "fake", "--out", str(tmp_path)]) == 0
    assert "s] halfway" in capsys.readouterr().err


def test_run_main_job_small(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--epochs", "1", "--rules", "bp", "fa", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "rule" in text and "fa" in text
    s = json.loads((out / "summary.json").read_text())
    assert set(s["rules"]) == {"bp", "fa"}
    assert (out / "figures" / "loss.png").exists() and (out / "fa" / "summary.json").exists()


def test_run_twice_needs_overwrite_and_reproduce_returns_an_int(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["run", "--rules", "bp", "fa", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert main(args) == 2 and "already holds results" in capsys.readouterr().err
    (out / "stray.txt").write_text("left from before")
    assert main(args + ["--overwrite"]) == 0
    assert not (out / "stray.txt").exists() and (out / "summary.json").is_file()
    assert main(["reproduce"]) == 0 and "Amit_2021/cifar" in capsys.readouterr().out
