"""Random connectivity: a fraction of a weight matrix fixed at zero.

Lillicrap (Methods, task 2) removes 50 % of the elements of W and B; Amit (§4) randomly zeroes
half of the feed-forward and, separately, half of the feedback connections.  A mask is drawn
once from an explicit generator; masked entries start at zero and never receive an update.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_range


def random_mask(shape, sparsity: float, rng: np.random.Generator) -> np.ndarray:
    """Float mask of ``shape`` with exactly ``round(sparsity·size)`` zeros placed at random.

    ``sparsity`` ∈ [0, 1) is the fraction of connections removed (0.5 for the papers' 50 %).
    """
    sparsity = check_range("sparsity", sparsity, 0.0, 1.0, hi_open=True)
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (randomness is always explicit)")
    size = int(np.prod(shape))
    mask = np.ones(size)
    mask[rng.permutation(size)[: int(round(sparsity * size))]] = 0.0
    return mask.reshape(shape)
