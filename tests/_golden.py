"""Scores recorded before the one-model redesign, and the configurations that produce them.

``python tests/_golden.py`` re-records ``tests/data/golden_scores.npz``; do that only for a
change that is meant to change scores, and say so in the commit.
"""

import os

import numpy as np
import torch

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "golden_scores.npz")

# Recorded before registration and fusion existed: both off, as they were then.
SMALL = dict(k=6, d=8, n_blocks=1, n_epochs=3, registration=False, fusion=None)

# name -> StudentTeacherDetector keyword arguments (teacher first)
DETECTORS = {
    "raw": dict(teacher="random", **SMALL, score_normalization="none", smoothing=0),
    "descriptor_two_students": dict(teacher="random", **SMALL, score_normalization="descriptor", smoothing=1,
                                    n_students=2),
    "location_sampled_rotated": dict(teacher="random", **SMALL, score_normalization="location", smoothing=2,
                                     n_points=120, rotation_augmentation=20.0),
    "bundled_d32": dict(teacher=None, k=32, d=32, n_epochs=2, score_normalization="descriptor", registration=False,
                        fusion=None),
}


def clouds(n_clouds, n, seed, bump=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_clouds):
        uv = rng.uniform(-1, 1, size=(n, 2))
        z = 0.2 * np.sin(3 * uv[:, 0])
        if bump:
            z = z + 0.6 * np.exp(-((uv[:, 0] - 0.3) ** 2 + uv[:, 1] ** 2) / 0.02)
        out.append(np.c_[uv * 20, z * 20] + rng.normal(scale=0.05, size=(n, 3)))
    return out


def compute():
    """Every recorded array, by name."""
    from skst3d import StudentTeacherDetector, TeacherPretrainer

    out = {}
    for name, params in DETECTORS.items():
        n = 400 if params["k"] > 16 else 160
        train, test = clouds(5, n, 0), clouds(2, n, 9, bump=True)
        det = StudentTeacherDetector(**params, random_state=0).fit(train)
        for i, s in enumerate(det.score_samples(test)):
            out[f"{name}/scores{i}"] = s
        out[f"{name}/offset"] = np.array([det.offset_])
        out[f"{name}/scale"] = np.array([det.scale_])
    teacher = TeacherPretrainer(d=8, k=8, n_blocks=1, n_epochs=2, n_decoded_points=32, random_state=0)
    teacher.fit(clouds(4, 300, 3))
    out["pretrainer/loss_curve"] = np.array(teacher.loss_curve_)
    out["pretrainer/transform"] = teacher.transform(clouds(1, 300, 4))[0]
    out["pretrainer/score"] = teacher.score_samples(clouds(2, 300, 5))
    out["pretrainer/reconstruct"] = teacher.reconstruct(clouds(1, 300, 4), [[0, 7]])[0].decoded
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    np.savez(GOLDEN, **compute())
    print("recorded", GOLDEN)
