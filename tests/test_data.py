"""Tests for bridge.data: IDX parsing and checks, synthetic tasks, digits, the CIFAR stand-in."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from bridge import data as D
from bridge.data import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _shared(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"shared data {folder} is absent (see DESIGN.md, Data)")
    return folder


def _copy_idx(name: str, dest: Path) -> Path:
    """Copy the four .gz files of ``name`` into ``dest`` and return it."""
    src = _shared(name)
    dest.mkdir(parents=True, exist_ok=True)
    for stem in IDX_STEMS:
        shutil.copy(src / f"{stem}.gz", dest / f"{stem}.gz")
    return dest


# --------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_dataset_loads_and_verifies(name):
    _shared(name)
    ds = D.load_idx_dataset(name, SHARED)  # md5 verification is on by default
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert ds.classification and ds.n_classes == 10 and ds.n_in == 784 and ds.n_out == 10
    assert not ds.lossy
    # pointing straight at the folder holding the files works too, and hits the in-memory cache
    again = D.load_idx_dataset(name, SHARED / name)
    np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_mnist_known_content():
    _shared("mnist")
    ds = D.load_idx_dataset("mnist", SHARED)
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y_test[:5].tolist() == [7, 2, 1, 0, 4]


def test_data_dir_from_environment(monkeypatch):
    _shared("mnist")
    monkeypatch.setenv("CREDIT_DATA_DIR", str(SHARED))
    assert D.default_data_dir() == SHARED
    assert D.load_dataset("mnist", n_train=100, n_test=10).x_train.shape == (100, 784)
    monkeypatch.delenv("CREDIT_DATA_DIR")
    assert D.default_data_dir() is None
    with pytest.raises(DataError, match="CREDIT_DATA_DIR"):
        D.load_idx_dataset("mnist")


def test_truncated_gzip_raises(tmp_path):
    folder = _copy_idx("mnist", tmp_path / "mnist")
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-200])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        D.load_idx_dataset("mnist", tmp_path)


def test_truncated_raw_file_raises(tmp_path):
    folder = _copy_idx("mnist", tmp_path / "mnist")
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(gz.read_bytes())
    gz.unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*truncated"):
        D.load_idx_dataset("mnist", tmp_path, verify=False)


def test_missing_file_raises(tmp_path):
    folder = _copy_idx("fashion-mnist", tmp_path / "fashion-mnist")
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte") as info:
        D.load_idx_dataset("fashion-mnist", tmp_path)
    assert "CREDIT_DATA_DIR" in str(info.value) and "--data-dir" in str(info.value)


def test_missing_directory_raises(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        D.load_idx_dataset("mnist", tmp_path / "nowhere")


def test_raw_labels_file_loads(tmp_path):
    folder = _copy_idx("mnist", tmp_path / "mnist")
    gz = folder / "train-labels-idx1-ubyte.gz"
    (folder / "train-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    ds = D.load_idx_dataset("mnist", tmp_path)
    assert ds.y_train.shape == (60000,)
    assert ds.y_train[:3].tolist() == [5, 0, 4]


def test_corrupted_byte_fails_checksum(tmp_path):
    folder = _copy_idx("mnist", tmp_path / "mnist")
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(gz.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label, so only the checksum can notice
    gz.unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"checksum mismatch.*t10k-labels-idx1-ubyte"):
        D.load_idx_dataset("mnist", tmp_path)
    assert D.load_idx_dataset("mnist", tmp_path, verify=False).y_test[100] == raw[108]


def test_bad_magic_raises(tmp_path):
    path = tmp_path / "junk-idx1-ubyte"
    path.write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(DataError, match="magic"):
        D.read_idx(path)


def test_read_idx_multibyte_big_endian(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(2, 3) - 2
    path = tmp_path / "ints-idx2"
    path.write_bytes(b"\x00\x00\x0c\x02" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + values.astype(">i4").tobytes())
    got = D.read_idx(path)
    np.testing.assert_array_equal(got, values)
    assert got.dtype == np.dtype("int32")


# --------------------------------------------------------------------------------------------------
# Synthetic tasks (Lillicrap et al. 2016, Methods, tasks 1 and 3)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("maker", [D.lillicrap_linear, D.lillicrap_nonlinear])
def test_lillicrap_deterministic_by_seed(maker):
    a, b, c = maker(n_train=200, n_test=50, seed=3), maker(n_train=200, n_test=50, seed=3), maker(
        n_train=200, n_test=50, seed=4)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert not np.array_equal(getattr(a, field), getattr(c, field))
    # the teacher and the test set do not depend on n_train
    d = maker(n_train=20, n_test=50, seed=3)
    np.testing.assert_array_equal(d.x_test, a.x_test)
    np.testing.assert_array_equal(d.x_train, a.x_train[:20])
    # a Generator works as a seed too
    e = maker(n_train=10, n_test=10, seed=np.random.default_rng(1))
    assert e.x_train.shape == (10, 30)


def test_lillicrap_linear_shapes_and_teacher():
    ds = D.lillicrap_linear(n_train=300, n_test=100, seed=0)
    assert ds.x_train.shape == (300, 30) and ds.y_train.shape == (300, 10)
    assert ds.x_test.shape == (100, 30) and ds.y_test.shape == (100, 10)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.float32
    assert not ds.classification and ds.n_classes is None and ds.n_in == 30 and ds.n_out == 10
    T = ds.teacher["T"]
    assert T.shape == (10, 30) and np.all(np.abs(T) <= 1.0) and T.min() < -0.5 and T.max() > 0.5
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        exact = (x.astype(np.float64) @ T.astype(np.float64).T).astype(np.float32)
        np.testing.assert_array_equal(y, exact)
        np.testing.assert_allclose(y, x @ T.T, rtol=1e-5, atol=1e-5)
    assert abs(ds.x_train.mean()) < 0.05 and abs(ds.x_train.std() - 1.0) < 0.05


def test_lillicrap_nonlinear_shapes_and_teacher():
    ds = D.lillicrap_nonlinear(n_train=400, seed=0)
    assert ds.x_train.shape == (400, 30) and ds.y_train.shape == (400, 10)
    assert ds.x_test.shape == (5000, 30) and ds.y_test.shape == (5000, 10)  # the paper's test set size
    t = ds.teacher
    assert [t[f"W{l}"].shape for l in range(3)] == [(20, 30), (10, 20), (10, 10)]
    assert [t[f"b{l}"].shape for l in range(3)] == [(20,), (10,), (10,)]
    x = ds.x_test.astype(np.float64)
    y = t["W2"] @ np.tanh(t["W1"] @ np.tanh(t["W0"] @ x.T + t["b0"][:, None]) + t["b1"][:, None]) + t["b2"][:, None]
    np.testing.assert_allclose(ds.y_test, y.T, rtol=1e-6, atol=1e-6)
    # non-trivially nonlinear: the best affine fit leaves a clear residual
    X = np.c_[x, np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(X, ds.y_test, rcond=None)
    unexplained = (ds.y_test - X @ coef).var(0).sum() / ds.y_test.var(0).sum()
    assert 0.15 < unexplained < 0.6


# --------------------------------------------------------------------------------------------------
# digits, dispatch, batching, subset
# --------------------------------------------------------------------------------------------------


def test_digits():
    ds = D.digits(seed=0)
    assert ds.n_in == 64 and ds.n_classes == 10 and ds.n_out == 10
    assert ds.n_train + ds.n_test == 1797 and abs(ds.n_test - 0.2 * 1797) < 10
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_test)) == set(range(10))
    same, other = D.digits(seed=0), D.digits(seed=1)
    np.testing.assert_array_equal(same.y_train, ds.y_train)
    assert not np.array_equal(other.y_train, ds.y_train)


def test_load_dataset_dispatch_and_unknown_name():
    assert D.DATASETS == ("lillicrap-linear", "lillicrap-nonlinear", "digits", "mnist", "fashion-mnist",
                          "cifar10", "cifar100", "cifar10-lossy")
    ds = D.load_dataset("lillicrap-linear", seed=2, n_train=5, n_test=3)
    np.testing.assert_array_equal(ds.x_train, D.lillicrap_linear(n_train=5, n_test=3, seed=2).x_train)
    assert D.load_dataset("digits", n_train=100).n_train == 100
    with pytest.raises(ValueError, match="unknown data set") as info:
        D.load_dataset("imagenet")
    for name in D.DATASETS:
        assert name in str(info.value)


def test_subset_and_batches():
    ds = D.lillicrap_linear(n_train=103, n_test=20, seed=0)
    small = ds.subset(n_train=10)
    assert small.n_train == 10 and small.n_test == 20 and small.teacher is ds.teacher
    np.testing.assert_array_equal(small.x_train, ds.x_train[:10])
    rng = np.random.default_rng(0)
    got = list(D.batches(ds.x_train, ds.y_train, 25, rng))
    assert [len(xb) for xb, _ in got] == [25, 25, 25, 25, 3]
    xs = np.concatenate([xb for xb, _ in got])
    ys = np.concatenate([yb for _, yb in got])
    order = np.lexsort(xs.T[::-1])
    ref = np.lexsort(ds.x_train.T[::-1])
    np.testing.assert_array_equal(xs[order], ds.x_train[ref])  # a permutation of the data
    np.testing.assert_array_equal(ys[order], ds.y_train[ref])  # with pairs kept together
    assert not np.array_equal(xs, ds.x_train)  # shuffled
    assert [len(xb) for xb, _ in D.batches(ds.x_train, ds.y_train, 25, 0, drop_last=True)] == [25] * 4
    a = [xb for xb, _ in D.batches(ds.x_train, ds.y_train, 25, 7)]
    b = [xb for xb, _ in D.batches(ds.x_train, ds.y_train, 25, 7)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    with pytest.raises(ValueError):
        next(D.batches(ds.x_train, ds.y_train[:5], 25, 0))


def test_seed_must_be_explicit():
    with pytest.raises(TypeError):
        D.lillicrap_linear(seed=None)


# --------------------------------------------------------------------------------------------------
# CIFAR-10 stand-in
# --------------------------------------------------------------------------------------------------


def test_cifar10_standin_small(tmp_path):
    npz = SHARED / "cifar10-jpeg-q75" / "cifar10_jpeg_q75.npz"
    if not npz.is_file():
        pytest.skip(f"{npz} is absent")
    ds = D.cifar10_standin(SHARED, n_train=50, n_test=20, cache_dir=tmp_path)
    assert ds.x_train.shape == (50, 3072) and ds.x_test.shape == (20, 3072)
    assert ds.y_train.shape == (50,) and ds.y_train.dtype == np.int64
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.lossy and "JPEG" in ds.note and "not CIFAR-10" in ds.note.replace("Not", "not")
    assert ds.n_in == 3072 and ds.n_classes == 10
    assert len(np.unique(ds.y_train)) > 3  # shuffled, not the npz's class-sorted order
    assert ds.name == "cifar10-lossy"
    again = D.load_dataset("cifar10-lossy", data_dir=npz.parent, n_train=50, n_test=20, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
