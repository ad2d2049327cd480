import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared MNIST / Fashion-MNIST / CIFAR stand-in folder (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


def pytest_configure(config):
    # keep matplotlib off any display and quiet
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Brian2 logs a DEBUG record per code object; captured by pytest that costs tens of seconds
    import logging

    logging.getLogger("brian2").setLevel(logging.INFO)
    # the test networks are small: one torch thread is as fast and does not collapse when other
    # processes hold the cores
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def quick_example(tmp_path_factory, request):
    """``quick_example("Author_Year/name")`` → the results folder of that example's ``--quick`` run
    with its default options, run once per test session: the smoke test and the per-paper tests
    read the same run instead of each paying for it."""
    import contextlib
    import io

    from bridge.app.examples import find_examples, load_example

    found = find_examples()
    done = {}

    def run(name: str) -> Path:
        if name not in done:
            argv = ["--quick", "--out", str(tmp_path_factory.mktemp(name.replace("/", "-")) / "out")]
            if "EX.data_dir(" in found[name].read_text():
                argv += ["--data-dir", str(request.getfixturevalue("shared_data"))]
            mod = load_example(found[name])
            with contextlib.redirect_stdout(io.StringIO()):
                done[name] = (mod.EX.run(mod.main, argv), Path(argv[2]))
        rc, out = done[name]
        assert rc == 0, f"{name} --quick exited {rc}"
        return out

    return run
