"""skst3d: 3D Student-Teacher anomaly detection for point clouds, as scikit-learn estimators.

The estimators live in :mod:`skst3d.pretrain` and :mod:`skst3d.detector`; they are loaded
lazily so that ``skst3d.metrics`` and ``skst3d.datasets`` stay usable without importing torch.
"""

from ._version import __version__

_LAZY = {
    "TeacherPretrainer": "skst3d.pretrain",
    "StudentTeacherDetector": "skst3d.detector",
}

__all__ = ["TeacherPretrainer", "StudentTeacherDetector", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skst3d' has no attribute {name!r}")
