"""Tests for the CIFAR-10/100 loaders (tiny fake batch files) and the lossy CIFAR-10 stand-in task."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bridge import data as D
from bridge.data import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NPZ = SHARED / "cifar10-jpeg-q75" / "cifar10_jpeg_q75.npz"
MAKE_BATCHES = SHARED / "cifar10-jpeg-q75" / "make_batches.py"

N_PER_FILE = {"cifar10": 3, "cifar100": 4}  # images per fake file (CIFAR-10 has six files, CIFAR-100 two)


@pytest.fixture(autouse=True)
def _fresh_cache():
    D.clear_cache()
    yield
    D.clear_cache()


def fake_images(name: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per file of the python layout: NCHW uint8 images, class labels and CIFAR-100 coarse labels."""
    rng = np.random.default_rng(seed)
    layout = D.CIFAR_LAYOUTS[name][0]
    out = {}
    for f in layout.files:
        n = N_PER_FILE[name]
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, D.CIFAR_N_CLASSES[name], size=n)
        out[f] = (images, labels, labels // 5)
    return out


def write_python(root: Path, name: str, images: dict, *, protocol: int = 2, str_keys: bool = False,
                 suffix: str = ".png") -> Path:
    """The python version: pickled dicts with the release's keys (bytes keys, or str keys as a Python 2
    pickle's read with encoding='latin1')."""
    folder = root / D.CIFAR_LAYOUTS[name][0].folder
    folder.mkdir(parents=True, exist_ok=True)
    for f, (img, lab, coarse) in images.items():
        rows = img.reshape(len(img), 3072)  # R plane, G plane, B plane, each row-major
        batch = {b"batch_label": f"batch {f}".encode(), b"data": rows,
                 b"filenames": [f"img_{k:06d}{suffix}".encode() for k in range(len(img))]}
        if name == "cifar10":
            batch[b"labels"] = [int(v) for v in lab]
        else:
            batch[b"fine_labels"] = [int(v) for v in lab]
            batch[b"coarse_labels"] = [int(v) for v in coarse]
        if str_keys:
            batch = {k.decode(): v for k, v in batch.items()}
        raw = pickle.dumps(batch, protocol=protocol)
        if protocol == 2:  # as in the release's (Python 2) pickles, which predate numpy._core
            raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        (folder / f).write_bytes(raw)
    return folder


def write_binary(root: Path, name: str, images: dict) -> Path:
    """The binary version: records <label><3072 pixels> (CIFAR-10) or <coarse><fine><3072 pixels>."""
    layout_py, layout_bin = D.CIFAR_LAYOUTS[name]
    folder = root / layout_bin.folder
    folder.mkdir(parents=True, exist_ok=True)
    for f_py, f_bin in zip(layout_py.files, layout_bin.files):
        img, lab, coarse = images[f_py]
        records = bytearray()
        for k in range(len(img)):
            head = [int(lab[k])] if name == "cifar10" else [int(coarse[k]), int(lab[k])]
            records += bytes(head) + img[k].tobytes()
        (folder / f_bin).write_bytes(bytes(records))
    return folder


def expected(name: str, images: dict):
    layout = D.CIFAR_LAYOUTS[name][0]
    parts = []
    for files in (layout.train, layout.test):
        parts.append(np.concatenate([images[f][0] for f in files]))
        parts.append(np.concatenate([images[f][1] for f in files]))
    return parts


# --------------------------------------------------------------------------------------------------
# reading both versions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_python_and_binary_versions_read_the_same_images(tmp_path, name):
    images = fake_images(name)
    write_python(tmp_path / "py", name, images)
    write_binary(tmp_path / "bin", name, images)
    x_tr, y_tr, x_te, y_te = expected(name, images)
    n_train = len(D.CIFAR_LAYOUTS[name][0].train) * N_PER_FILE[name]
    loaded = {}
    for version in ("py", "bin"):
        ds = D.load_cifar(name, tmp_path / version, verify=False)
        assert ds.name == name and not ds.lossy and ds.n_classes == D.CIFAR_N_CLASSES[name]
        assert ds.x_train.shape == (n_train, 3072) and ds.x_test.shape == (N_PER_FILE[name], 3072)
        assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
        # rows are R, G, B planes: reshaping to NCHW gives back the images (the files' order kept)
        np.testing.assert_array_equal(np.rint(ds.x_train.reshape(-1, 3, 32, 32) * 255).astype(np.uint8), x_tr)
        np.testing.assert_array_equal(np.rint(ds.x_test.reshape(-1, 3, 32, 32) * 255).astype(np.uint8), x_te)
        np.testing.assert_array_equal(ds.y_train, y_tr)  # CIFAR-100: the fine labels, not the coarse
        np.testing.assert_array_equal(ds.y_test, y_te)
        loaded[version] = ds
    np.testing.assert_array_equal(loaded["py"].x_train, loaded["bin"].x_train)
    np.testing.assert_array_equal(loaded["py"].y_test, loaded["bin"].y_test)
    assert "python" in loaded["py"].note and "binary" in loaded["bin"].note


def test_where_the_files_are_looked_for(tmp_path, monkeypatch):
    images = fake_images("cifar10")
    folder = write_python(tmp_path, "cifar10", images, protocol=pickle.HIGHEST_PROTOCOL, str_keys=True)
    write_binary(tmp_path, "cifar10", fake_images("cifar10", seed=1))  # a different binary copy
    parent = D.load_cifar("cifar10", tmp_path, verify=False)  # the python version wins
    itself = D.load_cifar("cifar10", folder, verify=False)  # the folder itself
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    env = D.load_dataset("cifar10", verify=False, n_train=5, n_test=2)  # $CREDIT_DATA_DIR, subset
    np.testing.assert_array_equal(parent.x_train, itself.x_train)
    np.testing.assert_array_equal(env.x_train, parent.x_train[:5])
    assert env.n_test == 2 and "python" in parent.note
    binary = D.load_cifar("cifar10", tmp_path / "cifar-10-batches-bin", verify=False)
    assert "binary" in binary.note and not np.array_equal(binary.x_train, parent.x_train)


# --------------------------------------------------------------------------------------------------
# errors: missing, truncated, corrupt, foreign
# --------------------------------------------------------------------------------------------------


def _assert_names_data_dir(msg: str):
    assert "--data-dir" in msg and D.DATA_DIR_ENV in msg


def test_missing_data_set_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match="no data directory") as info:
        D.load_dataset("cifar100")
    _assert_names_data_dir(str(info.value))
    with pytest.raises(DataError) as info:
        D.load_cifar("cifar10", tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "cifar-10-batches-py" in msg and "cifar-10-batches-bin" in msg
    assert "cifar10-lossy" in msg  # points at the stand-in's own task name
    _assert_names_data_dir(msg)
    folder = write_python(tmp_path, "cifar10", fake_images("cifar10"))
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as info:
        D.load_cifar("cifar10", tmp_path, verify=False)
    msg = str(info.value)
    assert str(folder) in msg and "missing data_batch_3" in msg and "test_batch" in msg
    _assert_names_data_dir(msg)
    (tmp_path / "c100" / "cifar-100-binary").mkdir(parents=True)  # right folder name, no files
    with pytest.raises(DataError, match=r"missing train\.bin, test\.bin"):
        D.load_cifar("cifar100", tmp_path / "c100")


def test_the_real_task_never_reads_the_standin(tmp_path):
    if NPZ.is_file():  # the shared folder holds only the lossy npz: cifar10 must refuse, not substitute
        with pytest.raises(DataError, match="cifar10-lossy"):
            D.load_dataset("cifar10", data_dir=SHARED)
    write_python(tmp_path, "cifar10", fake_images("cifar10"), suffix=".jpg")  # make_batches.py's mark
    with pytest.raises(DataError, match="make_batches.py.*cifar10-lossy"):
        D.load_cifar("cifar10", tmp_path, verify=False)


@pytest.mark.parametrize("version", ["python", "binary"])
def test_truncated_file_is_a_clear_error(tmp_path, version):
    images = fake_images("cifar100")
    folder = (write_python if version == "python" else write_binary)(tmp_path, "cifar100", images)
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as info:
        D.load_cifar("cifar100", tmp_path, verify=False)
    assert str(victim) in str(info.value)


def test_malformed_batches(tmp_path):
    folder = write_python(tmp_path, "cifar10", fake_images("cifar10"))
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match="lacks the keys"):
        D.load_cifar("cifar10", tmp_path, verify=False)
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                        b"labels": [1, 10]}))
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.9"):
        D.load_cifar("cifar10", tmp_path, verify=False)
    # a pickle that would call something other than numpy's array constructors is refused unopened
    (folder / "data_batch_2").write_bytes(pickle.dumps(shutil.rmtree))
    with pytest.raises(DataError, match="unexpected object shutil.rmtree"):
        D.load_cifar("cifar10", tmp_path, verify=False)


# --------------------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------------------


def test_checksum_table_covers_every_released_file():
    for layouts in D.CIFAR_LAYOUTS.values():
        for layout in layouts:
            table = D.CIFAR_CHECKSUMS[layout.folder]
            assert set(table) == set(layout.files), layout.folder
            for algo, digest in table.values():
                assert len(digest) == hashlib.new(algo).digest_size * 2
                int(digest, 16)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("version", ["python", "binary"])
def test_checksums_verified(tmp_path, monkeypatch, name, version):
    images = fake_images(name)
    folder = (write_python if version == "python" else write_binary)(tmp_path, name, images)
    algo = "sha256" if folder.name == "cifar-100-binary" else "md5"
    table = {f.name: (algo, hashlib.new(algo, f.read_bytes()).hexdigest()) for f in folder.iterdir()}
    monkeypatch.setitem(D.CIFAR_CHECKSUMS, folder.name, table)
    ds = D.load_cifar(name, tmp_path)
    assert "checksums verified" in ds.note
    # other pixels in well-formed files: only the checksum can tell
    (write_python if version == "python" else write_binary)(tmp_path, name, fake_images(name, seed=5))
    D.clear_cache()
    first = folder / D.CIFAR_LAYOUTS[name][0 if version == "python" else 1].files[0]
    with pytest.raises(DataError, match=f"checksum mismatch for {first}: {algo}") as info:
        D.load_cifar(name, tmp_path)
    assert "verify=False" in str(info.value)
    assert D.load_cifar(name, tmp_path, verify=False).n_train == ds.n_train  # the explicit opt-out


def test_fake_files_fail_the_real_checksums(tmp_path):
    write_binary(tmp_path, "cifar10", fake_images("cifar10"))
    with pytest.raises(DataError, match="checksum mismatch"):
        D.load_dataset("cifar10", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------------
# cifar10-lossy: the JPEG stand-in under its own name
# --------------------------------------------------------------------------------------------------


def test_lossy_task_from_the_shared_npz(tmp_path):
    if not NPZ.is_file():
        pytest.skip(f"{NPZ} is absent")
    ds = D.load_dataset("cifar10-lossy", data_dir=SHARED, n_train=20, n_test=10, cache_dir=tmp_path)
    assert ds.name == "cifar10-lossy" and ds.lossy and "LOSSY" in ds.note
    assert "LOSSY stand-in" in repr(ds)
    assert ds.x_train.shape == (20, 3072) and ds.y_test.shape == (10,) and ds.n_classes == 10


def test_lossy_task_from_batches_and_never_from_the_originals(tmp_path):
    images = fake_images("cifar10")
    write_python(tmp_path / "cifar10-lossy", "cifar10", images, suffix=".jpg")
    ds = D.load_dataset("cifar10-lossy", data_dir=tmp_path, seed=3)
    assert ds.name == "cifar10-lossy" and ds.lossy and "make_batches.py" in ds.note
    x_tr, y_tr, _, _ = expected("cifar10", images)
    order = D._child_rngs(3, 2)[0].permutation(len(y_tr))  # shuffled by the seed, like the npz path
    np.testing.assert_array_equal(ds.y_train, y_tr[order])
    np.testing.assert_array_equal(np.rint(ds.x_train * 255).astype(np.uint8), x_tr[order].reshape(-1, 3072))
    assert D.load_dataset("cifar10-lossy", data_dir=tmp_path, n_train=4).n_train == 4
    original = tmp_path / "orig"
    write_python(original, "cifar10", images)  # .png names: the original batches
    with pytest.raises(DataError, match="not a batch written by make_batches.py.*task cifar10"):
        D.load_dataset("cifar10-lossy", data_dir=original)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lossy CIFAR-10 stand-in was not found") as info:
        D.load_dataset("cifar10-lossy", data_dir=tmp_path / "empty")
    _assert_names_data_dir(str(info.value))


def test_make_batches_output_loads_as_lossy(tmp_path):
    """The shared make_batches.py, run on a few of the npz's images, writes batches the lossy task
    reads (and the real one refuses)."""
    if not (NPZ.is_file() and MAKE_BATCHES.is_file()):
        pytest.skip("the shared CIFAR-10 stand-in is absent")
    src = tmp_path / "src"
    src.mkdir()
    with np.load(NPZ) as z:
        small = {"classes": z["classes"]}
        for split, n in (("train", 12), ("test", 6)):
            off = z[f"{split}_offsets"]
            small[f"{split}_jpeg"] = z[f"{split}_jpeg"][: off[n]]
            small[f"{split}_offsets"] = off[: n + 1]
            small[f"{split}_labels"] = z[f"{split}_labels"][:n]
    np.savez(src / "cifar10_jpeg_q75.npz", **small)
    shutil.copy(MAKE_BATCHES, src / "make_batches.py")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(src / "make_batches.py"), str(tmp_path / "data" / "cifar10-lossy")],
                   check=True, capture_output=True, timeout=60)
    if time.perf_counter() - t0 > 10:
        pytest.skip("make_batches.py took over 10 s here")
    ds = D.load_dataset("cifar10-lossy", data_dir=tmp_path / "data")
    assert ds.lossy and ds.n_train == 12 and ds.n_test == 6
    from_npz = D.load_dataset("cifar10-lossy", data_dir=src, cache_dir=tmp_path / "cache")
    key = lambda x: np.lexsort(x.T[::-1])  # noqa: E731 - same images, in another order
    np.testing.assert_array_equal(ds.x_test[key(ds.x_test)], from_npz.x_test[key(from_npz.x_test)])
    with pytest.raises(DataError, match="cifar10-lossy"):
        D.load_dataset("cifar10", data_dir=tmp_path / "data" / "cifar10-lossy", verify=False)


# --------------------------------------------------------------------------------------------------
# the tasks
# --------------------------------------------------------------------------------------------------


def test_tasks_and_lossy_summary(tmp_path):
    from bridge.app.runs import TrainConfig, run_experiment
    from bridge.app.tasks import TASKS

    assert {"cifar10", "cifar100", "cifar10-lossy"} <= set(TASKS) <= set(D.DATASETS)
    assert TASKS["cifar10"].sizes[-1] == 10 and TASKS["cifar100"].sizes[-1] == 100
    assert TASKS["cifar10-lossy"].sizes == (3072, 1000, 1000, 1000, 10) and "LOSSY" in TASKS["cifar10-lossy"].source
    write_python(tmp_path / "cifar10-lossy", "cifar10", fake_images("cifar10"), suffix=".jpg")
    ds = D.load_dataset("cifar10-lossy", data_dir=tmp_path)
    cfg = TrainConfig(task="cifar10-lossy", rule="bp", sizes=(3072, 8, 10), epochs=1, quiet=True)
    s = run_experiment(cfg, data=ds, write=False)
    assert s["task"] == "cifar10-lossy" and s["lossy"] is True and "LOSSY" in s["data_note"]
    real = D.load_cifar("cifar10", write_python(tmp_path / "real", "cifar10", fake_images("cifar10")).parent,
                        verify=False)
    assert "lossy" not in run_experiment(TrainConfig(task="cifar10", rule="bp", sizes=(3072, 8, 10), epochs=1,
                                                     quiet=True), data=real, write=False)
