"""The teachers bundled with skst3d: which exist, where their files are, their architecture.

A bundled teacher is ``teacher_d{d}_k{k}.pt`` (state dicts, read with ``weights_only=True``)
with its metadata in ``teacher_d{d}_k{k}.pt.json``. Load one with
:meth:`skst3d.TeacherPretrainer.from_pretrained`.
"""

from __future__ import annotations

import json
import os

WEIGHTS_DIR = os.path.dirname(os.path.abspath(__file__))

#: Residual blocks of a teacher for a ``d`` with no bundled file (a random teacher, say).
#: One block (2 kNN hops) beat two on 4,096-point parts: small receptive fields stay local.
DEFAULT_N_BLOCKS = 1

__all__ = ["WEIGHTS_DIR", "DEFAULT_N_BLOCKS", "weights_path", "available", "metadata", "n_blocks"]


def weights_path(d, k=32):
    """Path of the bundled teacher file for ``(d, k)`` (which may not exist)."""
    return os.path.join(WEIGHTS_DIR, f"teacher_d{int(d)}_k{int(k)}.pt")


def available():
    """Sorted ``(d, k)`` pairs of the bundled teachers.

    Examples
    --------
    >>> from skst3d.weights import available
    >>> (64, 32) in available()
    True
    """
    found = []
    names = os.listdir(WEIGHTS_DIR) if os.path.isdir(WEIGHTS_DIR) else []
    for name in names:
        if name.startswith("teacher_d") and name.endswith(".pt"):
            d, k = name[len("teacher_d") : -len(".pt")].split("_k")
            found.append((int(d), int(k)))
    return sorted(found)


def metadata(d, k=32):
    """The metadata dict of the bundled teacher for ``(d, k)``, or None if none is bundled."""
    path = weights_path(d, k) + ".json"
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def n_blocks(d, k=32):
    """Residual blocks of the teacher bundled for ``(d, k)``; :data:`DEFAULT_N_BLOCKS` if none is.

    A ``"random"`` teacher takes this architecture, so that it differs from the bundled
    teacher only in its weights (the paper's pretrained-against-random ablation).
    """
    meta = metadata(d, k)
    return DEFAULT_N_BLOCKS if meta is None else int(meta["n_blocks"])
