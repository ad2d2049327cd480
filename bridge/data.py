"""Data sets for training and reproductions (numpy only).

Every loader returns a :class:`Dataset`: batch-first ``float32`` inputs ``x`` of shape (n, d) and either
``int64`` class labels (classification) or ``float32`` targets of shape (n, d_out) (regression).

Sources
-------
* ``lillicrap-linear`` / ``lillicrap-nonlinear`` — the synthetic tasks of Lillicrap et al. (2016),
  Methods "Task (1)" and "Task (3)" (``../shared/papers/003_*.txt``): generated from a seed, no files.
* ``digits`` — scikit-learn's embedded 8×8 digits (``load_digits``), no files.
* ``mnist`` / ``fashion-mnist`` — the standard IDX files (gzip or raw), read from a directory the user
  names (``data_dir`` argument, ``--data-dir`` flag, or the ``CREDIT_DATA_DIR`` environment variable),
  checked against known md5 sums.
* ``cifar10`` / ``cifar100`` — the original CIFAR-10 / CIFAR-100 releases, python-pickle or binary
  version, read from ``data_dir`` like MNIST and checked against the released files' checksums.
* ``cifar10-lossy`` — a *lossy* stand-in: every CIFAR-10 image re-encoded as a quality-75 JPEG and packed
  in ``cifar10-jpeg-q75/cifar10_jpeg_q75.npz`` (see ``../shared/data/README.md``), or the batches its
  ``make_batches.py`` writes.  Good for development and relative comparisons, not for claims about
  CIFAR-10 itself; it has a task name of its own so that its numbers are never taken for CIFAR-10's.

Randomness is explicit: every function that draws takes ``seed`` (an ``int`` or a
``np.random.Generator``); nothing seeds numpy globally.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "batches",
    "cifar10_standin",
    "clear_cache",
    "default_cache_dir",
    "default_data_dir",
    "digits",
    "lillicrap_linear",
    "lillicrap_nonlinear",
    "load_cifar",
    "load_dataset",
    "load_idx_dataset",
    "read_idx",
]

DATASETS: tuple[str, ...] = (
    "lillicrap-linear",
    "lillicrap-nonlinear",
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "cifar100",
    "cifar10-lossy",
)

DATA_DIR_ENV = "CREDIT_DATA_DIR"
CACHE_DIR_ENV = "CREDIT_CACHE_DIR"

_HINT = (
    f"set --data-dir or {DATA_DIR_ENV} to a folder that contains mnist/ and fashion-mnist/ "
    "(or straight to the folder holding the files)"
)


class DataError(ValueError):
    """A data file is missing, truncated, malformed or fails its checksum."""


# ---------------------------------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split in batch-first numpy arrays.

    ``x_*`` are ``float32`` of shape (n, d).  For classification ``y_*`` are ``int64`` labels of shape
    (n,) in ``[0, n_classes)``; for regression they are ``float32`` targets of shape (n, d_out).
    ``lossy`` marks a stand-in whose pixels differ from the original data set (say so in any report);
    ``teacher`` holds the generating parameters of a synthetic task (e.g. ``{"T": T}``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classification: bool
    n_classes: int | None
    lossy: bool = False
    note: str = ""
    teacher: dict | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 2:
                raise ValueError(f"{self.name}: x_{split} must be 2-D (n, d), got shape {x.shape}")
            if len(x) != len(y):
                raise ValueError(f"{self.name}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if self.classification and y.ndim != 1:
                raise ValueError(f"{self.name}: class labels y_{split} must be 1-D, got shape {y.shape}")
            if not self.classification and y.ndim != 2:
                raise ValueError(f"{self.name}: regression targets y_{split} must be 2-D, got {y.shape}")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError(f"{self.name}: train and test inputs differ in width")
        if self.classification and (self.n_classes is None or self.n_classes < 2):
            raise ValueError(f"{self.name}: a classification data set needs n_classes >= 2")

    @property
    def n_in(self) -> int:
        """Input dimension d."""
        return int(self.x_train.shape[1])

    @property
    def n_out(self) -> int:
        """Output dimension: the number of classes, or the width of the regression targets."""
        return int(self.n_classes) if self.classification else int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(len(self.x_train))

    @property
    def n_test(self) -> int:
        return int(len(self.x_test))

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """A copy holding the first ``n_train`` training and ``n_test`` test items (None keeps all)."""
        for label, n in (("n_train", n_train), ("n_test", n_test)):
            if n is not None and n < 0:
                raise ValueError(f"{label} must be >= 0, got {n}")
        tr = slice(None) if n_train is None else slice(0, n_train)
        te = slice(None) if n_test is None else slice(0, n_test)
        return dataclasses.replace(
            self,
            x_train=self.x_train[tr], y_train=self.y_train[tr],
            x_test=self.x_test[te], y_test=self.y_test[te],
        )

    def __repr__(self) -> str:
        kind = f"{self.n_classes} classes" if self.classification else f"regression, {self.n_out} outputs"
        lossy = ", LOSSY stand-in" if self.lossy else ""
        return (f"Dataset({self.name!r}: {self.n_train} train / {self.n_test} test, "
                f"{self.n_in} inputs, {kind}{lossy})")


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    """A Generator from an int seed (or the Generator itself). ``None`` is refused: randomness is explicit."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _child_rngs(seed: int | np.random.Generator, k: int) -> list[np.random.Generator]:
    """``k`` independent streams from one seed, so that e.g. the test set does not depend on n_train."""
    if isinstance(seed, np.random.Generator):
        ss = np.random.SeedSequence(seed.integers(0, 2**32, size=4).tolist())
    else:
        _rng(seed)  # type check
        ss = np.random.SeedSequence(int(seed))
    return [np.random.default_rng(child) for child in ss.spawn(k)]


def _check_count(label: str, n: int) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{label} must be a non-negative int, got {n!r}")
    return int(n)


def default_data_dir() -> Path | None:
    """The directory named by ``CREDIT_DATA_DIR``, or None when it is unset or empty."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def default_cache_dir() -> Path:
    """``CREDIT_CACHE_DIR`` if set, else ``~/.cache/credit-circuits``."""
    value = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "credit-circuits"


def _resolve_data_dir(data_dir: str | os.PathLike | None, what: str) -> Path:
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if base is None:
        raise DataError(f"no data directory given for {what}: {_HINT}")
    if not base.is_dir():
        raise DataError(f"data directory {str(base)!r} for {what} does not exist: {_HINT}")
    return base


# ---------------------------------------------------------------------------------------------------
# Lillicrap et al. (2016): synthetic tasks
# ---------------------------------------------------------------------------------------------------


def lillicrap_linear(
    n_train: int = 1000,
    n_test: int = 500,
    seed: int | np.random.Generator = 0,
    d_in: int = 30,
    d_out: int = 10,
) -> Dataset:
    """Task (1) of Lillicrap et al. (2016), Methods: linear function approximation.

    A fixed target matrix ``T`` (d_out × d_in, 10 × 30 in the paper) with entries ~ U(−1, 1); inputs
    ``x ~ N(0, I)``; targets ``y* = T x`` (batch-first: ``y = x Tᵀ``).  ``T`` is returned in
    ``Dataset.teacher["T"]`` (float32).  The targets are computed in float64 from the stored float32
    ``x`` and ``T`` and then rounded, so they equal ``T x`` to float32 precision.

    The teacher, the training inputs and the test inputs use independent streams spawned from
    ``seed``: changing ``n_train`` leaves ``T`` and the test set unchanged.
    """
    n_train, n_test = _check_count("n_train", n_train), _check_count("n_test", n_test)
    r_teacher, r_train, r_test = _child_rngs(seed, 3)
    T = r_teacher.uniform(-1.0, 1.0, size=(d_out, d_in)).astype(np.float32)

    def draw(rng, n):
        x = rng.standard_normal((n, d_in)).astype(np.float32)
        y = (x.astype(np.float64) @ T.astype(np.float64).T).astype(np.float32)
        return x, y

    x_train, y_train = draw(r_train, n_train)
    x_test, y_test = draw(r_test, n_test)
    return Dataset(
        "lillicrap-linear", x_train, y_train, x_test, y_test, classification=False, n_classes=None,
        note=f"Lillicrap et al. 2016 task (1): y* = T x, T ~ U(-1,1)^({d_out}x{d_in}), x ~ N(0, I)",
        teacher={"T": T},
    )


def lillicrap_nonlinear(
    n_train: int = 2000,
    n_test: int = 5000,
    seed: int | np.random.Generator = 0,
    sizes: tuple[int, ...] = (30, 20, 10, 10),
    gain: float = 2.0,
    bias_std: float = 0.5,
) -> Dataset:
    """Task (3) of Lillicrap et al. (2016), Methods: nonlinear function approximation.

    A fixed 30–20–10–10 target network with tanh hidden units, a linear output and biases,

        y* = W₂ tanh(W₁ tanh(W₀ x + b₀) + b₁) + b₂,    x ~ N(0, I),

    with 5000 held-out test points as in the paper.  The paper does not state the teacher's weight
    scale (only that it was chosen so that an extra hidden layer helps backprop), so we choose:

    * hidden layers ``W₀, W₁ ~ N(0, gain² / fan_in)`` with ``gain = 2``: pre-activations have standard
      deviation ≈ 2, so the tanh units work well into their saturating range;
    * output layer ``W₂ ~ N(0, 1 / fan_in)``, so targets have order-one scale;
    * all biases ``b_l ~ N(0, bias_std²)`` with ``bias_std = 0.5``, which breaks tanh's odd symmetry.

    With these defaults the best affine fit of y* on x explains only about 70 % of the target variance
    (≈ 90 % at gain 1, bias_std 0.1), i.e. the target is clearly nonlinear.  The parameters are
    returned in ``Dataset.teacher`` as float64 arrays ``W0, W1, W2, b0, b1, b2`` plus ``gain`` and
    ``bias_std``.  The teacher, training and test inputs use independent streams spawned from ``seed``.
    """
    n_train, n_test = _check_count("n_train", n_train), _check_count("n_test", n_test)
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive layer widths, got {sizes}")
    r_teacher, r_train, r_test = _child_rngs(seed, 3)
    n_layers = len(sizes) - 1
    teacher: dict = {"gain": float(gain), "bias_std": float(bias_std), "sizes": sizes}
    for l in range(n_layers):
        scale = (gain if l < n_layers - 1 else 1.0) / np.sqrt(sizes[l])
        teacher[f"W{l}"] = r_teacher.normal(0.0, scale, size=(sizes[l + 1], sizes[l]))
        teacher[f"b{l}"] = r_teacher.normal(0.0, bias_std, size=sizes[l + 1])

    def forward(x32):
        h = x32.astype(np.float64)
        for l in range(n_layers):
            a = h @ teacher[f"W{l}"].T + teacher[f"b{l}"]
            h = np.tanh(a) if l < n_layers - 1 else a
        return h.astype(np.float32)

    x_train = r_train.standard_normal((n_train, sizes[0])).astype(np.float32)
    x_test = r_test.standard_normal((n_test, sizes[0])).astype(np.float32)
    return Dataset(
        "lillicrap-nonlinear", x_train, forward(x_train), x_test, forward(x_test),
        classification=False, n_classes=None,
        note=(f"Lillicrap et al. 2016 task (3): {'-'.join(map(str, sizes))} tanh teacher with biases, "
              f"gain={gain}, bias_std={bias_std}, x ~ N(0, I)"),
        teacher=teacher,
    )


# ---------------------------------------------------------------------------------------------------
# scikit-learn digits (embedded)
# ---------------------------------------------------------------------------------------------------


def digits(seed: int | np.random.Generator = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8×8 handwritten digits (1797 images, ships with scikit-learn; no files).

    Pixels (0…16) are scaled to [0, 1].  The split is stratified: within each class a seeded random
    ``test_fraction`` of the items (rounded) goes to the test set; both sets are then shuffled.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (np.asarray(raw.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(raw.target, dtype=np.int64)
    rng = _rng(seed)
    test_idx, train_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_te = int(round(test_fraction * len(idx)))
        test_idx.append(idx[:n_te])
        train_idx.append(idx[n_te:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return Dataset(
        "digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx], classification=True,
        n_classes=10, note="scikit-learn load_digits (8x8), pixels / 16, stratified split",
    )


# ---------------------------------------------------------------------------------------------------
# IDX files: MNIST and Fashion-MNIST
# ---------------------------------------------------------------------------------------------------

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: md5 of the *uncompressed* IDX bytes.  MNIST: the canonical sums (../shared/data/README.md).
#: Fashion-MNIST: computed from the upstream .gz files, whose own md5s are 8d4fb7e6c68d591d4c3dfef9ec88bf0d
#: (train images), 25c81989df183df01b3e8a0aad5dffbe (train labels), bef4ecab320f06d8554ea6380940ec79
#: (test images), bb300cfdad3c16e7a12a480ee83cd310 (test labels).  Checking the uncompressed bytes accepts
#: raw files and re-compressed copies alike.
IDX_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

# IDX type codes (third byte of the magic number) → big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_IDX_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def clear_cache() -> None:
    """Forget the in-memory copies of parsed IDX and CIFAR files."""
    _IDX_CACHE.clear()
    _CIFAR_CACHE.clear()


def _read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when it starts with the gzip magic bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path} is not a valid gzip file ({exc}); it is probably truncated or corrupt: "
                "replace it with a fresh copy"
            ) from exc
    return data


def _parse_idx(data: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, then the data."""
    if len(data) < 4:
        raise DataError(f"{source} is too short to be an IDX file ({len(data)} bytes)")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{source} has a bad IDX magic number {data[:4].hex()}: not an IDX file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source} is truncated inside its IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got < expected:
        raise DataError(
            f"{source} is truncated: its header promises shape {shape} ({expected} data bytes) but only "
            f"{got} bytes follow; replace it with a fresh copy"
        )
    if got > expected:
        raise DataError(f"{source} has {got - expected} unexpected trailing bytes after shape {shape}")
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if dtype.itemsize > 1 else arr


def read_idx(path: str | os.PathLike, md5: str | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a read-only numpy array, optionally checking the md5 of
    its uncompressed bytes.  Raises :class:`DataError` for any problem."""
    path = Path(path)
    data = _read_bytes(path)
    arr = _parse_idx(data, str(path))
    if md5 is not None:
        digest = hashlib.md5(data).hexdigest()
        if digest != md5:
            raise DataError(
                f"checksum mismatch for {path}: md5 of the uncompressed bytes is {digest}, expected {md5}. "
                "The file is corrupt or not the canonical release: replace it (or pass verify=False)"
            )
    arr.flags.writeable = False
    return arr


def _find_idx_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    """The folder holding the four files: ``<base>/<name>/`` or ``<base>`` itself."""
    base = _resolve_data_dir(data_dir, name)
    stem = _IDX_FILES["train_images"]
    candidates = [base / name, base / name.replace("-", "_"), base]
    for folder in candidates:
        if (folder / stem).is_file() or (folder / (stem + ".gz")).is_file():
            return folder
    # Fall back to the sub-folder if it exists, so the error names the first missing file there.
    return next((c for c in candidates if c.is_dir() and c != base), base)


def _find_idx_file(folder: Path, stem: str, name: str) -> Path:
    for candidate in (folder / stem, folder / (stem + ".gz")):  # raw first: faster to read
        if candidate.is_file():
            return candidate
    raise DataError(f"{name} file {stem}[.gz] not found in {folder}: {_HINT}")


def _load_idx_arrays(name: str, data_dir, verify: bool) -> dict[str, np.ndarray]:
    folder = _find_idx_dir(name, data_dir)
    paths = {key: _find_idx_file(folder, stem, name) for key, stem in _IDX_FILES.items()}
    key = (name, verify) + tuple(
        (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values()
    )
    if key in _IDX_CACHE:
        return _IDX_CACHE[key]
    sums = IDX_MD5[name] if verify else {}
    arrays = {k: read_idx(p, sums.get(_IDX_FILES[k])) for k, p in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        ip, lp = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{ip}: expected uint8 images of shape (n, rows, cols), got {images.dtype} "
                            f"{images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise DataError(f"{lp}: expected uint8 labels of shape (n,), got {labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{ip} holds {len(images)} images but {lp} holds {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise DataError(f"{lp}: labels must lie in 0..9, found {int(labels.max())}")
    _IDX_CACHE[key] = arrays
    return arrays


def load_idx_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Dataset:
    """MNIST or Fashion-MNIST from the four standard IDX files.

    ``name`` is ``"mnist"`` or ``"fashion-mnist"``.  The files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or
    ``.gz``) are looked for in ``<data_dir>/<name>/`` and then in ``data_dir`` itself; ``data_dir``
    defaults to ``CREDIT_DATA_DIR``.  The IDX headers are parsed here (magic number, sizes, length
    check) and, with ``verify``, the md5 of every file's uncompressed bytes is checked against
    :data:`IDX_MD5`.  A missing, truncated, malformed or mismatching file raises :class:`DataError`.

    Pixels are scaled to [0, 1] (``float32``, flattened to rows × cols = 784); labels are ``int64``.
    Parsed files are kept in memory (keyed by path, size and mtime) so repeated loads only pay the
    float conversion; :func:`clear_cache` forgets them.  Lillicrap et al. (2016), Task (2), trains on
    the 60,000 MNIST training images and tests on the 10,000 held-out ones.
    """
    if name not in IDX_MD5:
        raise ValueError(f"unknown IDX data set {name!r}; choose one of {sorted(IDX_MD5)}")
    arrays = _load_idx_arrays(name, data_dir, verify)

    def pixels(images: np.ndarray) -> np.ndarray:
        x = images.reshape(len(images), -1).astype(np.float32)
        np.divide(x, np.float32(255.0), out=x)
        return x

    return Dataset(
        name,
        pixels(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
        pixels(arrays["test_images"]), arrays["test_labels"].astype(np.int64),
        classification=True, n_classes=10,
        note=f"{name} IDX files{' (md5 verified)' if verify else ''}, pixels / 255",
    )


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: the original batches (python-pickle or binary version)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CifarLayout:
    """One distributed version of a CIFAR data set: its folder name, format and file names."""

    folder: str
    fmt: str  # "python" (pickled dicts) or "binary" (fixed-length records)
    train: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return self.train + self.test


#: The python version first: when both versions are present, it is the one read.
CIFAR_LAYOUTS: dict[str, tuple[CifarLayout, ...]] = {
    "cifar10": (
        CifarLayout("cifar-10-batches-py", "python",
                    tuple(f"data_batch_{k}" for k in range(1, 6)), ("test_batch",)),
        CifarLayout("cifar-10-batches-bin", "binary",
                    tuple(f"data_batch_{k}.bin" for k in range(1, 6)), ("test_batch.bin",)),
    ),
    "cifar100": (
        CifarLayout("cifar-100-python", "python", ("train",), ("test",)),
        CifarLayout("cifar-100-binary", "binary", ("train.bin",), ("test.bin",)),
    ),
}

CIFAR_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
CIFAR_N_CLASSES = {"cifar10": 10, "cifar100": 100}

#: Checksums of the files as released at https://www.cs.toronto.edu/~kriz/cifar.html, keyed by
#: folder and file name, as ``(algorithm, hex digest)``.  Sources: the python versions' md5s are the
#: ones torchvision's ``CIFAR10`` / ``CIFAR100`` classes check (``train_list`` / ``test_list``); the
#: CIFAR-10 binary md5s are listed identically by several independent download scripts (e.g. CMake
#: ``check_files`` lists and a Go data-set registry); the CIFAR-100 binary files' sha256s are the ones
#: the Ruby port of torchvision (``TorchVision::Datasets::CIFAR100``) checks.
CIFAR_CHECKSUMS: dict[str, dict[str, tuple[str, str]]] = {
    "cifar-10-batches-py": {
        "data_batch_1": ("md5", "c99cafc152244af753f735de768cd75f"),
        "data_batch_2": ("md5", "d4bba439e000b95fd0a9bffe97cbabec"),
        "data_batch_3": ("md5", "54ebc095f3ab1f0389bbae665268c751"),
        "data_batch_4": ("md5", "634d18415352ddfa80567beed471001a"),
        "data_batch_5": ("md5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        "test_batch": ("md5", "40351d587109b95175f43aff81a1287e"),
    },
    "cifar-10-batches-bin": {
        "data_batch_1.bin": ("md5", "5dd7e06a14cb22eb9f671a540d1b7c25"),
        "data_batch_2.bin": ("md5", "5ea93a67294ea407fff1d09f752e9692"),
        "data_batch_3.bin": ("md5", "942cd6a4bcdd0dd3c604fbe906cb4421"),
        "data_batch_4.bin": ("md5", "ae636b3ba5c66a11e91e8cb52e771fcb"),
        "data_batch_5.bin": ("md5", "53f37980c15c3d472c316c40844f3f0d"),
        "test_batch.bin": ("md5", "803d5f7f4d78ea53de84dbe85f74fb6d"),
    },
    "cifar-100-python": {
        "train": ("md5", "16019d7e3df5f24257cddd939b257f8d"),
        "test": ("md5", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
    },
    "cifar-100-binary": {
        "train.bin": ("sha256", "f31298fc616915fa142368359df1c4ca2ae984d6915ca468b998a5ec6aeebf29"),
        "test.bin": ("sha256", "d8b1e6b7b3bee4020055f0699b111f60b1af1e262aeb93a0b659061746f8224a"),
    },
}

_CIFAR_PIXELS = 3072  # 1024 R, 1024 G, 1024 B, each a row-major 32×32 image
_CIFAR_CACHE: dict[tuple, tuple] = {}  # key → (x_train, y_train, x_test, y_test, folder, layout)


def _cifar_expected(name: str) -> str:
    """Human-readable list of the folders and files a CIFAR data set is looked for as."""
    parts = []
    for lay in CIFAR_LAYOUTS[name]:
        files = lay.files
        if len(files) > 2:
            listed = f"{files[0]} … {files[len(lay.train) - 1]}, {', '.join(lay.test)}"
        else:
            listed = ", ".join(files)
        parts.append(f"{lay.folder}/ ({lay.fmt} version: {listed})")
    return " or ".join(parts)


def _cifar_hint(name: str) -> str:
    hint = (f"set --data-dir or {DATA_DIR_ENV} to the folder holding {_cifar_expected(name)}, or to that "
            "folder itself")
    if name == "cifar10":
        hint += ("; the lossy JPEG stand-in (cifar10-jpeg-q75/, or batches written by its make_batches.py) "
                 "is the task cifar10-lossy")
    return hint


def _layout_files_in(folder: Path, layout: CifarLayout) -> bool:
    return any((folder / f).is_file() for f in layout.files)


def _find_cifar_folder(name: str, data_dir) -> tuple[Path, CifarLayout]:
    """The folder holding one version of ``name`` and that version's layout."""
    title = CIFAR_TITLES[name]
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if base is None:
        raise DataError(f"no data directory given for {title}: {_cifar_hint(name)}")
    if not base.is_dir():
        raise DataError(f"data directory {str(base)!r} for {title} is not an existing folder: {_cifar_hint(name)}")
    layouts = CIFAR_LAYOUTS[name]
    for layout in layouts:
        for folder in (base / layout.folder, base):
            if _layout_files_in(folder, layout):
                return folder, layout
    for layout in layouts:  # an empty or incomplete folder of the right name: report its missing files
        if (base / layout.folder).is_dir():
            return base / layout.folder, layout
    raise DataError(f"{title} not found in {base}: expected {_cifar_expected(name)}; {_cifar_hint(name)}")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a batch file cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _str_keys(d: dict) -> dict:
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def _read_cifar_pickle(raw: bytes, path: Path, label_key: str, what: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(pixels uint8 (n, 3072), labels int64 (n,), the batch dict)`` from one python-version batch."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # truncated or foreign pickles raise many types
        raise DataError(
            f"{path} cannot be read as a {what} python batch ({type(exc).__name__}: {exc}); it is probably "
            "truncated or corrupt: replace it with a fresh copy"
        ) from exc
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a {what} batch dict")
    batch = _str_keys(batch)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path} lacks the keys 'data' and {label_key!r} of a {what} python batch "
                        f"(has {sorted(batch)})")
    pixels = batch["data"]
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
            or pixels.shape[1] != _CIFAR_PIXELS:
        got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise DataError(f"{path}: 'data' must be uint8 of shape (n, {_CIFAR_PIXELS}), got {got}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: {label_key!r} is not a list of integer labels ({exc})") from exc
    if labels.shape != (len(pixels),):
        raise DataError(f"{path} holds {len(pixels)} images but {labels.size} {label_key!r}")
    return pixels, labels, batch


def _read_cifar_binary(raw: bytes, path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, labels)`` from one binary-version file: records of <label(s)><3072 pixels>.

    CIFAR-10 records start with the class byte (3073 bytes); CIFAR-100 records with the coarse and
    then the fine label byte (3074 bytes): the fine label is the class.
    """
    n_labels = 1 if name == "cifar10" else 2
    record = n_labels + _CIFAR_PIXELS
    if len(raw) == 0 or len(raw) % record:
        raise DataError(
            f"{path} has {len(raw)} bytes, not a whole number of {record}-byte records ({n_labels} label "
            f"byte{'s' if n_labels > 1 else ''} + {_CIFAR_PIXELS} pixels): it is truncated or not a "
            f"{CIFAR_TITLES[name]} binary batch; replace it with a fresh copy"
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    if n_labels == 2 and rows[:, 0].max() >= 20:
        raise DataError(f"{path}: coarse labels must lie in 0..19, found {int(rows[:, 0].max())}")
    return np.array(rows[:, n_labels:]), rows[:, n_labels - 1].astype(np.int64)


def _check_sum(raw: bytes, path: Path, expected: tuple[str, str] | None, hint: str = "") -> None:
    if expected is None:
        return
    algo, want = expected
    got = hashlib.new(algo, raw).hexdigest()
    if got != want:
        raise DataError(
            f"checksum mismatch for {path}: {algo} is {got}, expected {want} (the original release). The "
            f"file is corrupt, truncated or not the original: replace it (or pass verify=False){hint}"
        )


def _is_standin_batch(batch: dict) -> bool:
    """Whether a python batch was written by the stand-in's make_batches.py (its file names are .jpg;
    the original batches name .png files)."""
    names = batch.get("filenames")
    if not isinstance(names, (list, tuple)) or not names:
        return False
    first = names[0].decode("latin1") if isinstance(names[0], bytes) else str(names[0])
    return first.endswith(".jpg")


def _load_cifar_arrays(name: str, data_dir, verify: bool):
    title = CIFAR_TITLES[name]
    folder, layout = _find_cifar_folder(name, data_dir)
    missing = [f for f in layout.files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{title} ({layout.fmt} version) in {folder}: missing {', '.join(missing)}; expected "
            f"{', '.join(layout.files)} there; {_cifar_hint(name)}"
        )
    paths = [folder / f for f in layout.files]
    key = (name, layout.fmt, verify) + tuple(
        (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths
    )
    if key in _CIFAR_CACHE:
        return _CIFAR_CACHE[key]
    sums = CIFAR_CHECKSUMS.get(layout.folder, {}) if verify else {}
    label_key = "labels" if name == "cifar10" else "fine_labels"
    n_classes = CIFAR_N_CLASSES[name]
    out = []
    for files in (layout.train, layout.test):
        xs, ys = [], []
        for f in files:
            path = folder / f
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc}") from exc
            if layout.fmt == "python":
                pixels, labels, batch = _read_cifar_pickle(raw, path, label_key, title)
                if name == "cifar10" and _is_standin_batch(batch):
                    raise DataError(
                        f"{path} was written by make_batches.py from the lossy JPEG stand-in (its images "
                        "are named .jpg), not the original CIFAR-10: load it as the task cifar10-lossy"
                    )
            else:
                pixels, labels = _read_cifar_binary(raw, path, name)
            hint = ""
            if name == "cifar10":
                hint = "; a copy made from the lossy JPEG stand-in is the task cifar10-lossy"
            _check_sum(raw, path, sums.get(f), hint)
            if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
                raise DataError(f"{path}: labels must lie in 0..{n_classes - 1}, found "
                                f"{int(labels.min())}..{int(labels.max())}")
            xs.append(pixels)
            ys.append(labels)
        out += [np.concatenate(xs), np.concatenate(ys)]
    for a in out:
        a.flags.writeable = False
    arrays = (*out, folder, layout)
    _CIFAR_CACHE[key] = arrays
    return arrays


def _pixels01(rows: np.ndarray) -> np.ndarray:
    x = rows.astype(np.float32)
    np.divide(x, np.float32(255.0), out=x)
    return x


def load_cifar(
    name: str,
    data_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Dataset:
    """CIFAR-10 (``"cifar10"``) or CIFAR-100 (``"cifar100"``, its 100 fine labels) from the original files.

    Either version of the release is read: the python-pickle batches (``cifar-10-batches-py/``:
    ``data_batch_1`` … ``data_batch_5``, ``test_batch``; ``cifar-100-python/``: ``train``, ``test``) or
    the binary ones (``cifar-10-batches-bin/``: ``data_batch_1.bin`` … ``data_batch_5.bin``,
    ``test_batch.bin``; ``cifar-100-binary/``: ``train.bin``, ``test.bin``); the python version wins when
    both are present.  ``data_dir`` (default ``CREDIT_DATA_DIR``) may be the folder holding those
    folders or one of them itself.  With ``verify`` every file's checksum is checked against
    :data:`CIFAR_CHECKSUMS`; batches written from the lossy JPEG stand-in are refused even without it.
    A missing, truncated, malformed or mismatching file raises :class:`DataError`; nothing is ever
    substituted.  Pickles are read with an unpickler that only builds containers and numpy arrays.

    Rows are ``float32`` in [0, 1] of length 3072 in the files' layout (1024 R, 1024 G, 1024 B, each a
    row-major 32×32 image), so ``x.reshape(-1, 3, 32, 32)`` gives NCHW images; labels are ``int64``.
    The files' order is kept (the original batches are already shuffled).  Parsed files are kept in
    memory (keyed by path, size and mtime); :func:`clear_cache` forgets them.
    """
    if name not in CIFAR_LAYOUTS:
        raise ValueError(f"unknown CIFAR data set {name!r}; choose one of {sorted(CIFAR_LAYOUTS)}")
    x_tr, y_tr, x_te, y_te, folder, layout = _load_cifar_arrays(name, data_dir, verify)
    checked = " (checksums verified)" if verify and layout.folder in CIFAR_CHECKSUMS else ""
    return Dataset(
        name, _pixels01(x_tr), y_tr.astype(np.int64), _pixels01(x_te), y_te.astype(np.int64),
        classification=True, n_classes=CIFAR_N_CLASSES[name],
        note=f"{CIFAR_TITLES[name]}, original {layout.fmt} batches from {folder}{checked}, pixels / 255",
    )


# ---------------------------------------------------------------------------------------------------
# The lossy CIFAR-10 stand-in (JPEG quality 75): task cifar10-lossy
# ---------------------------------------------------------------------------------------------------

CIFAR_NPZ = "cifar10_jpeg_q75.npz"
CIFAR_FOLDER = "cifar10-jpeg-q75"
CIFAR_NOTE = (
    "LOSSY stand-in: every CIFAR-10 image re-encoded as a quality-75 JPEG; pixels differ slightly from "
    "CIFAR-10 (channel means ~1e-4, stds ~1% low). Not CIFAR-10 itself: fine for development and "
    "relative comparisons, not for absolute CIFAR-10 claims."
)


LOSSY_FOLDER = "cifar10-lossy"  # where ``make_batches.py $CREDIT_DATA_DIR/cifar10-lossy`` puts its batches
_LOSSY_BATCHES = CIFAR_LAYOUTS["cifar10"][0]  # make_batches.py writes the python version's layout
_LOSSY_HINT = (
    f"set --data-dir or {DATA_DIR_ENV} to the folder holding {CIFAR_FOLDER}/{CIFAR_NPZ} (or to the npz or "
    f"its folder), or holding {LOSSY_FOLDER}/{_LOSSY_BATCHES.folder}/ written by {CIFAR_FOLDER}/make_batches.py"
)


def _find_cifar10_lossy(data_dir) -> tuple[str, Path]:
    """``("npz", path)`` or ``("batches", folder)``: where the stand-in is.  The npz wins."""
    if data_dir is not None and Path(data_dir).expanduser().is_file():
        return "npz", Path(data_dir).expanduser()
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if base is None:
        raise DataError(f"no data directory given for the lossy CIFAR-10 stand-in: {_LOSSY_HINT}")
    if not base.is_dir():
        raise DataError(f"data directory {str(base)!r} for the lossy CIFAR-10 stand-in does not exist: "
                        f"{_LOSSY_HINT}")
    for candidate in (base / CIFAR_FOLDER / CIFAR_NPZ, base / CIFAR_NPZ):
        if candidate.is_file():
            return "npz", candidate
    batch_dirs = (base / LOSSY_FOLDER / _LOSSY_BATCHES.folder, base / CIFAR_FOLDER / _LOSSY_BATCHES.folder,
                  base / _LOSSY_BATCHES.folder, base)
    for folder in batch_dirs:
        if _layout_files_in(folder, _LOSSY_BATCHES):
            return "batches", folder
    raise DataError(
        f"the lossy CIFAR-10 stand-in was not found in {base}: expected {CIFAR_FOLDER}/{CIFAR_NPZ} or "
        f"{LOSSY_FOLDER}/{_LOSSY_BATCHES.folder}/ ({', '.join(_LOSSY_BATCHES.files)}); {_LOSSY_HINT}"
    )


def _load_lossy_batches(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The stand-in from the batches its make_batches.py writes; refuses the original CIFAR-10."""
    missing = [f for f in _LOSSY_BATCHES.files if not (folder / f).is_file()]
    if missing:
        raise DataError(f"lossy CIFAR-10 batches in {folder}: missing {', '.join(missing)}; expected "
                        f"{', '.join(_LOSSY_BATCHES.files)}; {_LOSSY_HINT}")
    out = []
    for files in (_LOSSY_BATCHES.train, _LOSSY_BATCHES.test):
        xs, ys = [], []
        for f in files:
            path = folder / f
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc}") from exc
            pixels, labels, batch = _read_cifar_pickle(raw, path, "labels", "lossy CIFAR-10")
            if len(pixels) and not _is_standin_batch(batch):
                raise DataError(
                    f"{path} is not a batch written by make_batches.py from the lossy JPEG stand-in (its "
                    "images are not named .jpg); if these are the original CIFAR-10 batches, use the task "
                    "cifar10"
                )
            if labels.size and (labels.min() < 0 or labels.max() > 9):
                raise DataError(f"{path}: labels must lie in 0..9")
            xs.append(pixels)
            ys.append(labels)
        out += [np.concatenate(xs), np.concatenate(ys)]
    return tuple(out)


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, indices: np.ndarray, source: str,
                  progress: bool = False) -> np.ndarray:
    """Decode the JPEGs ``indices`` into uint8 rows of 3072 in the CIFAR layout (1024 R, 1024 G, 1024 B)."""
    from PIL import Image

    out = np.empty((len(indices), 3072), dtype=np.uint8)
    it = indices
    if progress:
        try:
            from tqdm import tqdm

            it = tqdm(indices, desc="decoding CIFAR-10 JPEGs", unit="img")
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
    for row, k in enumerate(it):
        start, stop = int(offsets[k]), int(offsets[k + 1])
        try:
            img = np.asarray(Image.open(io.BytesIO(blob[start:stop].tobytes())).convert("RGB"))
        except Exception as exc:  # PIL raises several types for broken images
            raise DataError(f"{source}: JPEG {k} cannot be decoded ({exc}); replace the file") from exc
        if img.shape != (32, 32, 3):
            raise DataError(f"{source}: JPEG {k} has shape {img.shape}, expected (32, 32, 3)")
        out[row] = img.transpose(2, 0, 1).reshape(-1)
    return out


def _cifar_split(npz, split: str, path: Path, n: int | None, perm: np.ndarray,
                 cache_dir: Path | None, progress: bool) -> np.ndarray:
    """uint8 rows for ``perm[:n]`` of one split, from the on-disk cache when present."""
    offsets = npz[f"{split}_offsets"]
    total = len(offsets) - 1
    chosen = perm if n is None else perm[:n]
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"{path.stem}-{path.stat().st_size}-{split}.npy"
        if cache_file.is_file():
            try:
                full = np.load(cache_file, mmap_mode="r")
                if full.shape == (total, 3072) and full.dtype == np.uint8:
                    return np.array(full[chosen])
            except (OSError, ValueError):
                pass  # unreadable cache: decode again below
    blob = npz[f"{split}_jpeg"]
    if n is not None and n < total:
        return _decode_jpegs(blob, offsets, chosen, str(path), progress)
    full = _decode_jpegs(blob, offsets, np.arange(total), str(path), progress)
    if cache_file is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, full)
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only cache location only costs speed
    return full[chosen]


def cifar10_standin(
    data_dir: str | os.PathLike | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int | np.random.Generator = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Dataset:
    """The lossy CIFAR-10 stand-in (task ``cifar10-lossy``): every CIFAR-10 image as a quality-75 JPEG.

    Read from ``cifar10_jpeg_q75.npz``: ``data_dir`` may be the npz itself, its folder, or a folder
    containing ``cifar10-jpeg-q75/`` (default ``CREDIT_DATA_DIR``).  Without the npz, the batches its
    ``make_batches.py`` writes are read instead, from ``<data_dir>/cifar10-lossy/cifar-10-batches-py/``
    (i.e. ``make_batches.py <data_dir>/cifar10-lossy``), ``<data_dir>/cifar10-jpeg-q75/cifar-10-batches-py/``,
    ``<data_dir>/cifar-10-batches-py/`` or ``data_dir`` itself; those batches must carry the stand-in's
    mark (images named ``.jpg``; the originals name ``.png``), so the original CIFAR-10 is never read
    and labelled lossy, and :func:`load_cifar` refuses them as CIFAR-10.  Both splits are shuffled by
    a permutation drawn from ``seed`` there too, but the order differs from the npz path's.

    The npz stores the images sorted by class, so each split is
    shuffled by a fixed permutation drawn from ``seed``; ``n_train`` / ``n_test`` then keep the first
    items of that order and only those are decoded (Pillow), which keeps small runs and tests fast.
    A full split, once decoded, is cached as ``.npy`` in ``cache_dir`` (default
    :func:`default_cache_dir`, i.e. ``CREDIT_CACHE_DIR`` or ``~/.cache/credit-circuits``).

    Rows are ``float32`` in [0, 1] of length 3072 in the standard CIFAR layout (1024 R, 1024 G,
    1024 B, each a row-major 32×32 image), so ``x.reshape(-1, 3, 32, 32)`` gives NCHW images.  The
    returned data set has ``lossy=True``: report results on it as a stand-in, not as CIFAR-10.
    """
    kind, path = _find_cifar10_lossy(data_dir)
    r_train, r_test = _child_rngs(seed, 2)
    if kind == "batches":
        x_tr, y_tr, x_te, y_te = _load_lossy_batches(path)
        xs, ys = {}, {}
        for split, rng, n, x, y in (("train", r_train, n_train, x_tr, y_tr), ("test", r_test, n_test, x_te, y_te)):
            perm = rng.permutation(len(y))
            if n is not None:
                perm = perm[:min(_check_count(f"n_{split}", n), len(y))]
            xs[split], ys[split] = _pixels01(x[perm]), y[perm]
        note = f"{CIFAR_NOTE} Read from the batches written by make_batches.py in {path}."
    else:
        xs, ys = _lossy_from_npz(path, n_train, n_test, r_train, r_test, cache_dir, progress)
        note = CIFAR_NOTE
    return Dataset(
        "cifar10-lossy", xs["train"], ys["train"], xs["test"], ys["test"], classification=True,
        n_classes=10, lossy=True, note=note,
    )


def _lossy_from_npz(path: Path, n_train, n_test, r_train, r_test, cache_dir, progress):
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zlib.error) as exc:
        raise DataError(f"cannot read {path} as an npz archive ({exc}); replace it") from exc
    with npz:
        needed = {"train_jpeg", "train_offsets", "train_labels", "test_jpeg", "test_offsets", "test_labels"}
        missing = needed - set(npz.files)
        if missing:
            raise DataError(f"{path} lacks the arrays {sorted(missing)}: not the CIFAR-10 JPEG stand-in")
        xs, ys = {}, {}
        for split, rng, n in (("train", r_train, n_train), ("test", r_test, n_test)):
            labels = np.asarray(npz[f"{split}_labels"], dtype=np.int64)
            if n is not None:
                n = min(_check_count(f"n_{split}", n), len(labels))
            perm = rng.permutation(len(labels))
            rows = _cifar_split(npz, split, path, n, perm, cache, progress)
            xs[split], ys[split] = _pixels01(rows), labels[perm if n is None else perm[:n]]
    return xs, ys


# ---------------------------------------------------------------------------------------------------
# Dispatch and batching
# ---------------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    seed: int | np.random.Generator = 0,
    **kw,
) -> Dataset:
    """Load a data set by name (one of :data:`DATASETS`).

    ``seed`` drives the synthetic tasks, the digits split and the shuffle of the lossy CIFAR-10
    stand-in; MNIST-type data and the original CIFAR-10/100 keep their files' order.  Extra keywords go
    to the loader (e.g. ``n_train``, ``n_test``, ``test_fraction``, ``verify``, ``cache_dir``);
    ``n_train`` / ``n_test`` are honoured for every data set (for digits, the IDX sets and
    CIFAR-10/100 through :meth:`Dataset.subset`).
    """
    kw = {k: v for k, v in kw.items() if not (k in ("n_train", "n_test") and v is None)}
    if name == "lillicrap-linear":
        return lillicrap_linear(seed=seed, **kw)
    if name == "lillicrap-nonlinear":
        return lillicrap_nonlinear(seed=seed, **kw)
    if name == "cifar10-lossy":
        return cifar10_standin(data_dir=data_dir, seed=seed, **kw)
    if name in ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100"):
        n_train, n_test = kw.pop("n_train", None), kw.pop("n_test", None)
        if name == "digits":
            ds = digits(seed=seed, **kw)
        elif name in CIFAR_LAYOUTS:
            ds = load_cifar(name, data_dir, **kw)
        else:
            ds = load_idx_dataset(name, data_dir, **kw)
        return ds if n_train is None and n_test is None else ds.subset(n_train, n_test)
    raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: int | np.random.Generator,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x_batch, y_batch)`` minibatches covering one epoch in an order shuffled by ``rng``.

    The last batch is smaller when ``len(x)`` is not a multiple of ``batch_size`` (skipped with
    ``drop_last``).  Pass the same Generator every epoch to get a fresh shuffle each time.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = _rng(rng).permutation(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
