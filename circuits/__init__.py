"""Brian2 circuits that compute and send back the error signals learning needs.

Each circuit has a matrix twin in :mod:`plasticity` and a cross-check in ``tests/``.  Importing
this package imports Brian2 but changes none of its preferences; the code-generation target is
chosen per circuit (``target='numpy'`` default, ``'cython'`` for big networks) and set only for
the duration of its runs (:func:`circuits._brian.codegen_target`).

* :mod:`circuits.amit` — Amit (2021): output error circuit (App. 1, Fig. 14), feedback shut-down
  (eq. 3), mirrored Hebbian synapses (URFB/FRFB) and the online layered circuit (Remark 1, Fig. 15).
* :mod:`circuits.spiking` — spiking twins (Poisson integrate-and-fire ON/OFF populations) of the
  Amit App. 1 circuits, of the mirrored synapses and of the DI controller (Podlaski & Machens);
  :mod:`circuits.spiking_layered` — a small spiking layered network learning online (URFB).
"""

from ._brian import (
    codegen_target,
    cython_cache_dir,
    get_feedback,
    get_matrix,
    get_weights,
    quiet_brian,
    set_feedback,
    set_matrix,
    set_weights,
)
from .amit import (
    LayeredCircuit,
    OutputErrorCircuit,
    ShutdownResult,
    TrainRecord,
    build_mirrored_synapses,
    build_output_error_circuit,
    feedback_shutdown,
    mirrored_update,
    output_error_signal,
    output_regimes,
)

__all__ = [
    "codegen_target", "cython_cache_dir", "quiet_brian",
    "set_matrix", "get_matrix", "set_weights", "get_weights", "set_feedback", "get_feedback",
    "LayeredCircuit", "OutputErrorCircuit", "ShutdownResult", "TrainRecord",
    "build_mirrored_synapses", "build_output_error_circuit", "feedback_shutdown", "mirrored_update",
    "output_error_signal", "output_regimes",
]
