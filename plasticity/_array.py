"""A tiny array-namespace shim so that each rule's reference math is written once.

The functions in :mod:`plasticity` are called with NumPy arrays by the matrix twins and the
Brian2 cross-checks, and with torch tensors by :mod:`bridge`.  Only the handful of operations
the rules need are mapped; torch is never imported here.
"""

from __future__ import annotations

import numpy as np


def is_torch(a) -> bool:
    """True when ``a`` is a torch tensor (detected without importing torch)."""
    return type(a).__module__.startswith("torch")


class _NumpyOps:
    name = "numpy"

    @staticmethod
    def pinv(a):
        single = a.dtype != np.float64  # see _TorchOps.pinv
        try:
            r = np.linalg.pinv(a)
            if not single or np.isfinite(r).all() or not np.isfinite(a).all():
                return r
        except np.linalg.LinAlgError:
            if not single:
                raise
        return np.linalg.pinv(a.astype(np.float64)).astype(a.dtype)

    @staticmethod
    def solve(a, b):
        return np.linalg.solve(a, b)

    @staticmethod
    def eye(n, like):
        return np.eye(n, dtype=like.dtype)

    @staticmethod
    def clip(a, lo, hi):
        return np.clip(a, lo, hi)

    @staticmethod
    def sigmoid(a):
        # numerically stable logistic
        out = np.empty_like(a)
        pos = a >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
        e = np.exp(a[~pos])
        out[~pos] = e / (1.0 + e)
        return out

    @staticmethod
    def softmax(a):
        z = a - a.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    @staticmethod
    def log_softmax(a):
        z = a - a.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)

    @staticmethod
    def as_float(mask, like):
        return mask.astype(like.dtype)

    @staticmethod
    def one_hot(labels, n, like):
        out = np.zeros((len(labels), n), dtype=like.dtype)
        out[np.arange(len(labels)), np.asarray(labels)] = 1.0
        return out

    tanh = staticmethod(np.tanh)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    maximum = staticmethod(np.maximum)
    sum = staticmethod(np.sum)
    zeros_like = staticmethod(np.zeros_like)


class _TorchOps:
    name = "torch"

    def __init__(self):
        import torch  # local: plasticity never imports torch at module level

        self.t = torch

    def pinv(self, a):
        """``a⁺``.  A single-precision SVD can fail on a finite matrix whose singular values cluster
        (an orthogonally initialised W a few hundred updates in): it raises that it did not
        converge, or (MKL, one thread) returns NaN.  That matrix is then inverted in double
        precision and the result cast back, so that no rule stops on a solvable case."""
        t = self.t
        single = a.dtype != t.float64
        try:
            r = t.linalg.pinv(a)
            if not single or bool(t.isfinite(r).all()) or not bool(t.isfinite(a).all()):
                return r
        except t.linalg.LinAlgError:
            if not single:
                raise
        return t.linalg.pinv(a.double()).to(a.dtype)

    def solve(self, a, b):
        return self.t.linalg.solve(a, b)

    def eye(self, n, like):
        return self.t.eye(n, dtype=like.dtype, device=like.device)

    def clip(self, a, lo, hi):
        return self.t.clamp(a, lo, hi)

    def sigmoid(self, a):
        return self.t.sigmoid(a)

    def softmax(self, a):
        return self.t.softmax(a, dim=-1)

    def log_softmax(self, a):
        return self.t.log_softmax(a, dim=-1)

    def where(self, c, a, b):
        return self.t.where(c, a, b)

    def as_float(self, mask, like):
        return mask.to(like.dtype)

    def one_hot(self, labels, n, like):
        return self.t.nn.functional.one_hot(labels.long(), n).to(like.dtype)

    def tanh(self, a):
        return self.t.tanh(a)

    def abs(self, a):
        return self.t.abs(a)

    def sign(self, a):
        return self.t.sign(a)

    def maximum(self, a, b):
        if not self.t.is_tensor(b):
            b = self.t.as_tensor(b, dtype=a.dtype, device=a.device)
        return self.t.maximum(a, b)

    def sum(self, a, axis=None):
        return a.sum() if axis is None else a.sum(dim=axis)

    def zeros_like(self, a):
        return self.t.zeros_like(a)


_NP = _NumpyOps()
_TORCH = None


def ops(a):
    """The operation table that matches the array type of ``a``."""
    global _TORCH
    if is_torch(a):
        if _TORCH is None:
            _TORCH = _TorchOps()
        return _TORCH
    return _NP
