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
