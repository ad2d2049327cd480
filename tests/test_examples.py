"""Every script under examples/ (found, not listed): the shared command-line core, its data-folder rule,
and a ``--quick`` smoke run.  The per-paper property tests are in tests/test_examples_<author>.py."""

from __future__ import annotations

import contextlib
import io

import pytest

from bridge.app.examples import Example, find_examples, load_example

EXAMPLES = find_examples()
CORE = ("--quick", "--out", "--seed", "--data-dir", "--threads")
#: ``--quick`` runs that take more than ~15 s on one shared core, or whose per-paper tests already run
#: them with other options (Lansdell's figures: over seeds and with the search)
SLOW = {"Amit_2021/cifar", "Amit_2021/depth_mnist", "Cameron_2025/pinv", "Cameron_2025/results",
        "Lansdell_2019/cifar_cnn", "Lansdell_2019/fig1", "Lansdell_2019/fig2", "Podlaski_2020/fig3",
        "Podlaski_2020/mnist"}


def _needs_data(name) -> bool:
    return "EX.data_dir(" in EXAMPLES[name].read_text()


def test_examples_are_found():
    assert len(EXAMPLES) >= 14 and all("/" in n for n in EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_source_has_no_path_or_data_guessing(name):
    src = EXAMPLES[name].read_text()
    for bad in ("sys.path", "shared/data", '"shared"', "parents[3]", "argparse.ArgumentParser("):
        assert bad not in src, f"{name}: {bad}"
    assert 'raise SystemExit(EX.run(main))' in src


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_shared_core_and_help(name):
    mod = load_example(EXAMPLES[name])
    assert isinstance(mod.EX, Example) and f"{mod.EX.author}/{mod.EX.name}" == name
    assert callable(mod.simulate) and callable(mod.plot) and callable(mod.main)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        mod.main(["--help"])
    assert e.value.code == 0
    text = out.getvalue()
    assert all(opt in text for opt in CORE), text
    assert f"runs/{name}" in text  # the default --out


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_bad_core_options_are_usage_errors(name, tmp_path):
    mod = load_example(EXAMPLES[name])
    for argv in (["--threads", "0"], ["--seed", "-1"], ["--out", str(tmp_path / "f")]):
        (tmp_path / "f").write_text("a file")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
            mod.main(argv)
        assert e.value.code == 2, argv
        assert err.getvalue().strip().splitlines()[-1].startswith(f"{name}: error:")


@pytest.mark.parametrize("name", sorted(n for n in EXAMPLES if _needs_data(n)))
def test_no_data_folder_is_one_clear_error(name, tmp_path, monkeypatch):
    monkeypatch.delenv("CREDIT_DATA_DIR", raising=False)
    mod = load_example(EXAMPLES[name])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = mod.EX.run(mod.main, ["--quick", "--out", str(tmp_path)])
    assert rc == 2
    assert err.getvalue() == f"{name}: error: no data folder: pass --data-dir DIR or set $CREDIT_DATA_DIR\n"


def test_data_folder_from_the_environment(tmp_path, monkeypatch):
    ex = Example("examples/X_2000/y.py")
    monkeypatch.setenv("CREDIT_DATA_DIR", str(tmp_path))
    assert ex.data_dir(None) == str(tmp_path) and ex.data_dir(str(tmp_path / "..")) == str(tmp_path / "..")
    monkeypatch.setenv("CREDIT_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a folder"):
        ex.data_dir(None)


def test_seed_options():
    def parse(kind, argv):
        ex = Example("examples/X_2000/y.py", seeds=kind)
        return ex.seed_params(ex.parse(ex.parser(), argv + ["--out", "/nonexistent/o"]))

    assert parse("single", []) == {} and parse("single", ["--seed", "3"]) == {"seed": 3}
    assert parse("count", ["--seeds", "2"]) == {"seeds": 2}
    assert parse("count", ["--seed", "4", "--seeds", "2"]) == {"seed": 4, "seeds": 2}
    assert parse("list", ["--seeds", "1", "5"]) == {"seeds": [1, 5]} and parse("list", ["--seed", "7"]) == {"seeds": [7]}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(EXAMPLES)])
def test_quick_smoke(name, quick_example):
    out = quick_example(name)  # the same run the per-paper tests read (tests/conftest.py)
    assert list(out.glob("*.json")) and list(out.glob("*.png")), sorted(out.iterdir())


def test_credit_reproduce_runs_an_example(tmp_path):
    from bridge.app.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["reproduce", "Amit_2021/fig12", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig12.png").is_file()


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--n-train", "2.5"], ["--lr", "-1"], ["--lr", "inf"]])
def test_count_and_rate_options_are_one_line_usage_errors(argv, tmp_path):
    mod = load_example(EXAMPLES["Podlaski_2020/autoencoder"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        mod.main(argv + ["--out", str(tmp_path)])
    assert e.value.code == 2
    last = err.getvalue().strip().splitlines()[-1]
    assert last.startswith(f"Podlaski_2020/autoencoder: error: argument {argv[0]}: must be "), last
