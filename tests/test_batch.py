"""Batch scoring in worker processes gives exactly the serial scores."""

import numpy as np
import pytest

from skst3d import StudentTeacherDetector
from skst3d.batch import score_samples_parallel


def wavy(n, seed):
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-1, 1, size=(n, 2)) * 20
    return np.c_[uv, 4 * np.sin(uv[:, 0] / 3)] + rng.normal(scale=0.05, size=(n, 3))


@pytest.fixture(scope="module")
def fitted():
    clouds = [wavy(300, s) for s in range(4)]
    det = StudentTeacherDetector("random", k=8, d=8, n_blocks=1, n_epochs=2, fusion="fpfh", random_state=0)
    return det.fit(clouds), [wavy(300 + 20 * s, 10 + s) for s in range(5)]


def test_loky_workers_score_bit_for_bit_like_serial(fitted):
    det, clouds = fitted
    serial = det.score_samples(clouds)
    for batch_size in (1, 2):
        parallel = score_samples_parallel(det, clouds, n_jobs=2, batch_size=batch_size)
        assert [len(p) for p in parallel] == [len(c) for c in clouds]
        assert all(np.array_equal(a, b) for a, b in zip(parallel, serial))


def test_dask_workers_score_bit_for_bit_like_serial(fitted):
    distributed = pytest.importorskip("dask.distributed")
    import joblib

    det, clouds = fitted
    serial = det.score_samples(clouds)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster), joblib.parallel_config(backend="dask"):
            parallel = score_samples_parallel(det, clouds, n_jobs=-1)
    assert all(np.array_equal(a, b) for a, b in zip(parallel, serial))


def test_bad_arguments_are_named(fitted):
    det, clouds = fitted
    with pytest.raises(ValueError, match="batch_size"):
        score_samples_parallel(det, clouds, batch_size=0)
    with pytest.raises(ValueError, match="X must be a list of point clouds"):
        score_samples_parallel(det, clouds[0])
    with pytest.raises(TypeError, match="score_samples"):
        score_samples_parallel(object(), clouds)
