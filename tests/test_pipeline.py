"""skst3d.pipeline: the recommended set-up has score_clouds, predict_clouds and find_defects."""

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline as sklearn_make_pipeline

from skst3d import StudentTeacherDetector
from skst3d.defects import find_defects
from skst3d.pipeline import Pipeline, make_pipeline
from skst3d.registration import RigidRegistration

SMALL = {"k": 8, "d": 8, "n_blocks": 1, "n_epochs": 3, "validation_fraction": 0.25, "random_state": 0}


def turned(cloud, angle, shift):
    c, s = np.cos(angle), np.sin(angle)
    return cloud @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T + shift


def part(seed, bump=False, n=400):
    """An asymmetric wavy part (so registration has one answer), optionally with a bump at (8, 4)."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform([-20, -10], [20, 10], size=(n, 2))
    z = 2.0 * np.sin(uv[:, 0] / 4) + 0.05 * uv[:, 0] * uv[:, 1] / 10
    if bump:
        z = z + 8.0 * np.exp(-((uv[:, 0] - 8) ** 2 + (uv[:, 1] - 4) ** 2) / 12)
    return np.c_[uv, z]


@pytest.fixture(scope="module")
def fitted():
    train = [turned(part(s), 0.1 * (s - 2), [3.0 * s, -2.0, 0.5]) for s in range(6)]
    return make_pipeline(RigidRegistration(random_state=0), StudentTeacherDetector("random", **SMALL)).fit(train)


def test_make_pipeline_builds_an_skst3d_pipeline():
    model = make_pipeline(RigidRegistration(), StudentTeacherDetector("random"))
    assert isinstance(model, Pipeline)
    assert [name for name, _ in model.steps] == ["rigidregistration", "studentteacherdetector"]
    assert isinstance(clone(model), Pipeline)
    # scikit-learn's own Pipeline does not forward the cloud methods; ours hides them when the
    # final step lacks them
    assert not hasattr(sklearn_make_pipeline(RigidRegistration(), StudentTeacherDetector()), "score_clouds")
    assert not hasattr(make_pipeline(RigidRegistration(), IsolationForest()), "predict_clouds")


def test_cloud_methods_apply_the_transforms_first(fitted):
    test = [turned(part(10), 0.2, [1.0, 1.0, 0.0]), turned(part(11, bump=True), -0.15, [-2.0, 0.0, 1.0])]
    registered = fitted[0].transform(test)
    detector = fitted[-1]
    np.testing.assert_array_equal(fitted.score_clouds(test), detector.score_clouds(registered))
    np.testing.assert_array_equal(fitted.predict_clouds(test), detector.predict_clouds(registered))


def test_find_defects_reports_regions_on_the_input_points(fitted):
    """Regions of a scan far from the origin and turned: where they are on the scan as given."""
    far = np.array([5e5, 5.4e6, 100.0])
    scan = turned(part(12, bump=True), 0.25, far)
    [regions] = fitted.find_defects([scan], threshold=None, min_peak=None)
    scores = fitted.score_samples([scan])[0]
    detector = fitted[-1]
    expected = find_defects(scan, -scores, -detector.offset_)
    assert [r.indices.tolist() for r in regions] == [r.indices.tolist() for r in expected]
    assert regions, "the bump should be flagged"
    for region in regions:
        np.testing.assert_allclose(region.centroid, scan[region.indices].mean(axis=0), rtol=0, atol=1e-6)
    # the bump's place on the scan as given, not in the reference frame of the registration
    bump_centre = turned(np.array([[8.0, 4.0, 0.0]]), 0.25, far)[0]
    assert np.hypot(*(np.array(regions[0].centroid[:2]) - bump_centre[:2])) < 4.0


def test_a_pipeline_pickles_with_its_methods(fitted, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    test = [part(13, bump=True)]
    assert isinstance(loaded, Pipeline)
    np.testing.assert_array_equal(loaded.score_clouds(test), fitted.score_clouds(test))
