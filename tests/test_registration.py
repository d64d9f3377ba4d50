import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skst3d.datasets import make_synthetic_parts
from skst3d.geometry import random_rotation
from skst3d.registration import RigidRegistration, best_rigid_transform, rigid_align


@pytest.fixture(scope="module")
def bracket():
    data = make_synthetic_parts(n_train=3, n_test=0, n_points=1024, part_types=["bracket"], random_state=0)
    return [c.astype(np.float64) for c in data.train]


def _brute_force_rotation(source, target, n=4001):
    """Best rotation about z by exhaustive search over angles (centred clouds, known pairs)."""
    s, t = source - source.mean(0), target - target.mean(0)
    angles = np.linspace(-np.pi, np.pi, n)
    c, si = np.cos(angles), np.sin(angles)
    # sum ||R s - t||^2 = const - 2 sum t.(R s); R about z only touches x, y
    score = c * (t[:, 0] @ s[:, 0] + t[:, 1] @ s[:, 1]) + si * (t[:, 1] @ s[:, 0] - t[:, 0] @ s[:, 1])
    return angles[np.argmax(score)]


def test_best_rigid_transform_matches_exhaustive_search(rng):
    source = rng.normal(size=(40, 3)) * [3.0, 1.0, 0.2]
    angle = 1.1
    rz = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    target = source @ rz.T + rng.normal(scale=0.05, size=source.shape) * [1, 1, 0]
    rotation, _ = best_rigid_transform(source, target)
    found = np.arctan2(rotation[1, 0], rotation[0, 0])
    assert abs(found - _brute_force_rotation(source, target)) < 2 * np.pi / 4000 * 2
    assert np.allclose(rotation[2], [0, 0, 1], atol=1e-2)


def test_best_rigid_transform_never_reflects(rng):
    source = rng.normal(size=(30, 3))
    mirrored = source * [1.0, 1.0, -1.0]  # a reflection fits exactly; a rotation must not
    rotation, _ = best_rigid_transform(source, mirrored)
    assert np.isclose(np.linalg.det(rotation), 1.0)
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-10)


@settings(deadline=None, max_examples=15)
@given(degrees=st.floats(0.0, 180.0), seed=st.integers(0, 2**31 - 1))
def test_rigid_align_recovers_any_pose(bracket, degrees, seed):
    cloud = bracket[0]
    rotation = random_rotation(degrees, np.random.default_rng(seed))
    shift = np.random.default_rng(seed + 1).uniform(-50, 50, 3)
    moved = cloud @ rotation.T + shift
    found_r, found_t, rmse = rigid_align(moved, cloud, random_state=0)
    assert np.abs(moved @ found_r.T + found_t - cloud).max() < 1e-3
    assert rmse < 1e-3


def test_rigid_align_is_pose_independent_with_a_defect(bracket):
    """A defective, independently sampled scan lands in the same place whatever its pose."""
    data = make_synthetic_parts(n_train=0, n_test=2, n_points=1024, part_types=["bracket"], defect_fraction=1.0,
                                random_state=3)
    reference, scan = bracket[0], data.test[0].astype(np.float64)
    spacing = np.sqrt(np.ptp(reference[:, 0]) * np.ptp(reference[:, 1]) / len(reference))
    r0, t0, rmse0 = rigid_align(scan, reference, random_state=0)
    assert rmse0 < spacing  # a real fit: closer than the point spacing
    moved = scan @ random_rotation(120.0, np.random.default_rng(0)).T - 20.0
    r1, t1, rmse1 = rigid_align(moved, reference, random_state=0)
    assert np.abs((moved @ r1.T + t1) - (scan @ r0.T + t0)).max() < 0.05 * spacing
    assert rmse1 == pytest.approx(rmse0, rel=1e-2)


def test_transformer_keeps_points_in_order(bracket):
    rotation = random_rotation(90.0, np.random.default_rng(1))
    clouds = [bracket[0], bracket[1] @ rotation.T + 7.0]
    reg = RigidRegistration(random_state=0).fit(clouds)
    aligned = reg.transform(clouds)
    assert [a.shape for a in aligned] == [c.shape for c in clouds]
    assert all(a.dtype == np.float64 for a in aligned)  # far-from-origin scans keep their resolution
    # distances between points are unchanged: the same points, moved rigidly
    d_in = np.linalg.norm(clouds[1][:50, None] - clouds[1][None, :50], axis=-1)
    d_out = np.linalg.norm(aligned[1][:50, None].astype(np.float64) - aligned[1][None, :50], axis=-1)
    assert np.allclose(d_in, d_out, atol=1e-3)
    np.testing.assert_allclose(aligned[0], clouds[0], atol=1e-4)  # the reference stays put
    rotations, translations, rmse = reg.transforms(clouds)
    assert rotations.shape == (2, 3, 3) and translations.shape == (2, 3) and rmse.shape == (2,)


def test_transformer_validates_and_pickles(bracket):
    with pytest.raises(ValueError, match="reference=5 but X holds only 3 clouds"):
        RigidRegistration(reference=5).fit(bracket)
    with pytest.raises(ValueError, match="overlap"):
        RigidRegistration(overlap=1.5).fit(bracket)
    with pytest.raises(Exception, match="not fitted"):
        RigidRegistration().transform(bracket)
    bad = [bracket[0], np.full((10, 3), np.nan)]
    with pytest.raises(ValueError, match=r"X\[1\]"):
        RigidRegistration().fit(bad)
    reg = RigidRegistration(random_state=0).fit(bracket)
    again = pickle.loads(pickle.dumps(reg))
    for a, b in zip(reg.transform(bracket), again.transform(bracket)):
        np.testing.assert_array_equal(a, b)
    assert clone(reg).get_params() == reg.get_params()


def test_pipeline_scores_line_up_with_input_points(bracket):
    from skst3d import StudentTeacherDetector

    detector = StudentTeacherDetector("random", d=8, k=8, n_epochs=1, random_state=0)
    pipe = make_pipeline(RigidRegistration(random_state=0), detector).fit(bracket[:2])
    scores = pipe.score_samples(bracket[2:])
    assert [s.shape for s in scores] == [(c.shape[0],) for c in bracket[2:]]
    direct = pipe[-1].score_samples(pipe[0].transform(bracket[2:]))
    np.testing.assert_array_equal(scores[0], direct[0])
