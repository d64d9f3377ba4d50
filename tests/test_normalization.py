"""Local score normalisation: the z-score against the nearest training points, by brute force."""

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from skst3d import StudentTeacherDetector
from skst3d._scoring import LocalErrorReference, nearest_reference

from test_detector import SMALL, _by_hand, wavy_clouds


def _nearest_by_sorting(keys, queries, n_neighbors):
    distances = np.linalg.norm(queries[:, None, :] - keys[None, :, :], axis=-1)
    return np.argsort(distances, axis=1, kind="stable")[:, :n_neighbors]


def _brute_force_z(keys, errors, queries, query_errors, n_neighbors):
    """z-score against the n_neighbors nearest keys, by sorting every distance; for positions
    (3 dimensions) the n_neighbors keys nearest to the query's nearest key."""
    if keys.shape[1] <= 3:
        nearest = _nearest_by_sorting(keys, keys, n_neighbors)[_nearest_by_sorting(keys, queries, 1)[:, 0]]
    else:
        nearest = _nearest_by_sorting(keys, queries, n_neighbors)
    local = errors[nearest]
    floor = max(0.05 * errors.std(), 1e-12)  # a single key has no spread
    return (query_errors - local.mean(1)) / np.maximum(local.std(1), floor)


@given(
    seed=st.integers(0, 2**16),
    n_keys=st.integers(1, 300),
    n_queries=st.integers(1, 50),
    dim=st.sampled_from([3, 8, 64]),
    n_neighbors=st.integers(1, 60),
)
def test_normalize_matches_brute_force(seed, n_keys, n_queries, dim, n_neighbors):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(n_keys, dim)).astype(np.float32)
    errors = rng.gamma(2.0, size=n_keys)
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    query_errors = rng.gamma(2.0, size=n_queries)
    got = LocalErrorReference(keys, errors, n_neighbors).normalize(queries, query_errors)
    want = _brute_force_z(keys, errors, queries, query_errors, min(n_neighbors, n_keys))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_reference_reuses_its_tree_and_pickles_without_it(rng):
    import pickle

    keys, errors = rng.normal(size=(500, 3)), rng.gamma(2.0, size=500)
    queries, query_errors = rng.normal(size=(40, 3)), rng.gamma(2.0, size=40)
    ref = LocalErrorReference(keys, errors, 12)
    first = ref.normalize(queries, query_errors)
    tree = ref._tree
    assert tree is not None
    np.testing.assert_array_equal(ref.normalize(queries, query_errors), first)
    assert ref._tree is tree  # built once
    restored = pickle.loads(pickle.dumps(ref))
    assert restored._tree is None
    assert set(restored._statistics) == {12}  # the statistics at the keys travel: computed once
    np.testing.assert_array_equal(restored.normalize(queries, query_errors), first)
    np.testing.assert_allclose(first, _brute_force_z(keys.astype(np.float32), errors, queries.astype(np.float32),
                                                     query_errors, 12), rtol=1e-6)


@pytest.mark.parametrize("dim", [3, 16])
def test_nearest_reference_finds_the_exact_neighbours(dim, rng):
    keys = rng.normal(size=(500, dim)).astype(np.float32)
    queries = rng.normal(size=(70, dim)).astype(np.float32)
    got = nearest_reference(keys, queries, 5)
    want = np.argsort(np.linalg.norm(queries[:, None] - keys[None], axis=-1), axis=1)[:, :5]
    assert np.array_equal(np.sort(got, axis=1), np.sort(want, axis=1))


def test_error_where_training_errors_were_high_is_scaled_down():
    # Two regions: errors around 1 and around 10. The same raw error 10 is ordinary in the
    # second region and extreme in the first.
    rng = np.random.default_rng(0)
    keys = np.r_[rng.uniform(0, 1, (200, 3)), rng.uniform(5, 6, (200, 3))]
    errors = np.r_[rng.normal(1, 0.1, 200), rng.normal(10, 1, 200)]
    z = LocalErrorReference(keys, errors, 20).normalize(np.array([[0.5] * 3, [5.5] * 3]), np.array([10.0, 10.0]))
    # the first region's spread (0.1) is below the floor, 5 % of the global spread
    assert z[0] == pytest.approx(9.0 / (0.05 * errors.std()), rel=0.05)
    assert abs(z[1]) < 3


def _raw_errors(det, clouds):
    raw = copy.deepcopy(det).set_params(smoothing=0)
    raw.error_reference_ = None
    return [-s for s in raw.score_samples(clouds)]


@pytest.mark.parametrize("normalization, smoothing", [("location", 0), ("descriptor", 0), ("location", 2)])
def test_detector_scores_are_local_z_scores_of_its_errors(normalization, smoothing):
    train = wavy_clouds(4)
    det = StudentTeacherDetector(
        "random", **dict(SMALL, score_normalization=normalization, smoothing=smoothing), n_normalization_neighbors=10,
        validation_fraction=0.0, random_state=0,
    ).fit(train)
    reference = det.error_reference_
    # the reference holds every training point (no validation clouds) with its raw error
    np.testing.assert_allclose(reference.errors, np.concatenate(_raw_errors(det, train)), rtol=1e-4, atol=1e-5)
    if normalization == "location":
        # positions relative to the training centroid (float64 first: far scans keep their resolution)
        np.testing.assert_allclose(reference.origin, np.mean([c.mean(0) for c in train], axis=0), rtol=1e-12)
        np.testing.assert_allclose(reference.keys + reference.origin, np.concatenate(train), rtol=1e-6, atol=1e-5)
    else:
        assert reference.keys.shape == (4 * 160, SMALL["d"])
    test = wavy_clouds(2, seed=9, bump=True)
    raw = _raw_errors(det, test)
    for cloud, error, score in zip(test, raw, det.score_samples(test)):
        # the query's key: its position, or its standardised teacher descriptor computed by hand
        queries = cloud - reference.origin if normalization == "location" else _by_hand(det, cloud)[0]
        want = _brute_force_z(reference.keys.astype(np.float64), reference.errors, queries, error, 10)
        # smoothing averages the z-scores (not the raw errors) over each point and its k neighbours
        neighbours = cKDTree(cloud).query(cloud, SMALL["k"] + 1)[1][:, 1:]
        for _ in range(smoothing):
            want = np.c_[want, want[neighbours]].mean(1)
        np.testing.assert_allclose(-score, want, rtol=1e-4, atol=1e-4)


def test_descriptor_normalisation_is_translation_invariant_and_location_is_not():
    train = wavy_clouds(4)
    cloud = wavy_clouds(1, seed=9, bump=True)[0]
    shifted = cloud + np.array([30.0, -10.0, 5.0])
    by_descriptor = StudentTeacherDetector("random", **dict(SMALL, score_normalization="descriptor"), random_state=0).fit(train)
    a, b = by_descriptor.score_samples([cloud, shifted])
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    by_location = StudentTeacherDetector("random", **dict(SMALL, score_normalization="location"), random_state=0).fit(train)
    a, b = by_location.score_samples([cloud, shifted])
    assert np.abs(a - b).max() > 1e-2


def test_offset_comes_from_normalised_validation_scores():
    clouds = wavy_clouds(6)
    det = StudentTeacherDetector(
        "random", **dict(SMALL, score_normalization="location"), contamination=0.1, validation_fraction=0.5, random_state=0
    ).fit(clouds)
    # three clouds trained and formed the reference; the other three set the offset at 10 %
    scores = np.concatenate(det.score_samples(clouds))
    in_reference = len(det.error_reference_.errors)
    assert in_reference == 3 * 160
    flagged = np.mean(scores < det.offset_)
    assert 0.02 < flagged < 0.2


def test_descriptor_reference_is_capped(monkeypatch):
    import skst3d.detector as detector

    monkeypatch.setattr(detector, "_DESCRIPTOR_REFERENCE_SIZE", 100)
    det = StudentTeacherDetector("random", **dict(SMALL, score_normalization="descriptor"), random_state=0).fit(wavy_clouds())
    assert det.error_reference_.keys.shape == (100, SMALL["d"])
    assert det.error_reference_.errors.shape == (100,)


def test_no_reference_without_normalisation_and_bad_value_rejected():
    det = StudentTeacherDetector("random", **SMALL, random_state=0).fit(wavy_clouds(3))
    assert det.error_reference_ is None
    with pytest.raises(ValueError, match="score_normalization"):
        StudentTeacherDetector("random", **dict(SMALL, score_normalization="global")).fit(wavy_clouds(3))
